/**
 * Issue #19 with issue #15: with the OpenTelemetry SDK on and `ContextOpenTelemetryModule`, the SQL
 * comment carries OTel's trace (the comment is one more carrier of the propagation contract): the
 * trace id of the request's exported spans, and as parent id the span active when the statement is
 * issued, as OTel's own instrumentations would write it. Without an active span it falls back to the
 * record's trace (adopted from OTel at the entry). Real PostgreSQL on loopback.
 */
import 'reflect-metadata';
import { Controller, Get, Inject, Module, type INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { SpanKind, context as otelContext, propagation, ROOT_CONTEXT, trace, type TextMapPropagator } from '@opentelemetry/api';
import { CompositePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import pg from 'pg';
import { ContextModule, ContextService } from '../../src/index.js';
import { ContextOpenTelemetryModule, ContextPropagator } from '../../src/integrations/opentelemetry/index.js';
import { commentPg } from '../../src/integrations/sql/index.js';
import { requireBroker } from '../utils/brokers.js';
import { bootApp } from '../utils/platforms.js';
import { commentOf, PG, SqlContext, traceOf } from '../sql/helpers.js';
import { OUTSIDE, startOtel, type OtelSdk } from './otel-sdk.js';

const POOL = Symbol('pool');
const ECHO = 'SELECT current_query() AS q';

interface Answer {
  correlationId: string;
  /** A statement issued in the handler (the server span active). */
  direct: string;
  /** A statement issued inside a span the handler started, and that span's id. */
  inner: string;
  innerSpanId: string;
  /** A statement issued with no OTel span active (the record's own trace). */
  spanless: string;
  recordTrace: { traceId: string; spanId: string };
}

@Controller('otel-sql')
class OtelSqlController {
  constructor(
    @Inject(POOL) private readonly pool: pg.Pool,
    private readonly context: ContextService<SqlContext>,
  ) {}

  private async echo(): Promise<string> {
    return (await this.pool.query<{ q: string }>(ECHO)).rows[0]!.q;
  }

  @Get()
  async run(): Promise<Answer> {
    const direct = await this.echo();
    const { inner, innerSpanId } = await trace.getTracer('test').startActiveSpan('db work', async (span) => {
      try {
        return { inner: await this.echo(), innerSpanId: span.spanContext().spanId };
      } finally {
        span.end();
      }
    });
    const spanless = await otelContext.with(ROOT_CONTEXT, () => this.echo());
    const { traceId, spanId } = this.context.trace!;
    return { correlationId: this.context.correlationId ?? '', direct, inner, innerSpanId, spanless, recordTrace: { traceId, spanId } };
  }
}

describe('OpenTelemetry SDK + nestjs-context/sql: the comment carries OTel’s trace', () => {
  let otel: OtelSdk;
  let app: INestApplication;
  let pool: pg.Pool;
  let url: string;

  beforeAll(async () => {
    await requireBroker('postgres');
    otel = startOtel();
    pool = commentPg(new pg.Pool({ ...PG, max: 2 }));
    @Module({
      imports: [ContextModule.forRoot(SqlContext), ContextOpenTelemetryModule.forRoot()],
      controllers: [OtelSqlController],
      providers: [{ provide: POOL, useValue: pool }],
    })
    class AppModule {}
    app = await bootApp(AppModule, () => new ExpressAdapter());
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
    await pool?.end();
    await otel?.shutdown();
  });

  for (const inbound of [undefined, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']) {
    it(`statements carry the exported spans' trace and the active span as parent (${inbound === undefined ? 'no inbound traceparent' : 'inbound traceparent'})`, async () => {
      otel.exporter.reset();
      const headers: Record<string, string> = { [OUTSIDE]: '1', 'x-request-id': 'otel-sql-1' };
      if (inbound !== undefined) headers.traceparent = inbound;
      const res = await fetch(url + '/otel-sql', { headers });
      expect(res.status).toBe(200);
      const answer = (await res.json()) as Answer;
      const spans = await otel.until((s) => s.some((span) => span.kind === SpanKind.SERVER) && s.some((span) => span.name === 'db work'));
      const server = spans.find((span) => span.kind === SpanKind.SERVER) as ReadableSpan;
      const traceId = server.spanContext().traceId;
      if (inbound !== undefined) expect(traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
      const direct = commentOf(answer.direct);
      const inner = commentOf(answer.inner);
      const spanless = commentOf(answer.spanless);
      for (const comment of [direct, inner, spanless]) {
        expect(comment.correlation_id).toBe('otel-sql-1');
        expect(traceOf(comment.traceparent).traceId).toBe(traceId);
      }
      // With a span active, its id is the parent, as OTel writes it on its own calls.
      expect(traceOf(direct.traceparent).parentId).toBe(server.spanContext().spanId);
      expect(traceOf(inner.traceparent).parentId).toBe(answer.innerSpanId);
      expect(spans.map((span) => span.spanContext().spanId)).toContain(answer.innerSpanId);
      // Without one, the record's trace (adopted from the server span) with a fresh parent id.
      expect(answer.recordTrace).toEqual({ traceId, spanId: server.spanContext().spanId });
      expect(traceOf(spanless.traceparent).parentId).not.toBe(server.spanContext().spanId);
      expect(answer.spanless.match(/traceparent=/g)).toHaveLength(1);
    });
  }

  it('a traceparent the tracer’s propagator writes is encoded like any value: nothing in it leaves the comment', async () => {
    const hostile = "00-x'*/; DROP TABLE t; --\n/*-01";
    const evil: TextMapPropagator = {
      inject: (_ctx, carrier, setter) => setter.set(carrier, 'traceparent', hostile),
      extract: (ctx) => ctx,
      fields: () => ['traceparent'],
    };
    propagation.disable();
    propagation.setGlobalPropagator(evil);
    try {
      const res = await fetch(url + '/otel-sql', { headers: { [OUTSIDE]: '1', 'x-request-id': 'otel-sql-evil' } });
      expect(res.status).toBe(200);
      const answer = (await res.json()) as Answer;
      for (const text of [answer.direct, answer.inner]) {
        expect(text.startsWith(`${ECHO} /*`)).toBe(true);
        const comment = commentOf(text); // only key='value' pairs over the encoded alphabet, or it throws
        expect(comment.traceparent).toBe(hostile);
        expect(comment.correlation_id).toBe('otel-sql-evil');
      }
    } finally {
      propagation.disable();
      propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new ContextPropagator()] }));
    }
  });
});
