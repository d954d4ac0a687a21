import 'reflect-metadata';
import { Controller, Get, Injectable, Module, type INestApplication, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { Cron, Interval, ScheduleModule } from '@nestjs/schedule';
import { ExpressAdapter } from '@nestjs/platform-express';
import { SpanKind, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { createLogFields } from '../../src/integrations/logger/index.js';
import { ContextEventEmitterModule, ListenerContext } from '../../src/integrations/event-emitter/index.js';
import { ContextScheduleModule } from '../../src/integrations/schedule/index.js';
import { ContextOpenTelemetryModule } from '../../src/integrations/opentelemetry/index.js';
import { bootApp } from '../utils/platforms.js';
import { Log } from '../entrypoints/log.js';
import { OUTSIDE, startOtel, type OtelSdk } from './otel-sdk.js';

class EntryContext {
  correlationId: string;
  source: string;
  constructor({ correlationId, source }: ContextInit) {
    this.correlationId = correlationId;
    this.source = source;
  }
}

const fields = createLogFields();

/** What one listener call or scheduled run saw: its record's trace and the fields of a line written there. */
interface Saw {
  key: string;
  correlationId: string;
  source: string;
  traceId: string;
  spanId: string;
  line: Record<string, unknown>;
  /** A line written inside a span started there. */
  innerLine: Record<string, unknown>;
  innerSpanId: string;
}

function look(key: string, context: ContextService<EntryContext>): Saw {
  const { traceId, spanId } = context.trace!;
  const line = { ...fields.current() };
  const inner = trace.getTracer('test').startActiveSpan('inner work', (span) => {
    span.end();
    return { line: { ...fields.current() }, spanId: span.spanContext().spanId };
  });
  return { key, correlationId: context.correlationId ?? '', source: context.get().source, traceId, spanId, line, innerLine: inner.line, innerSpanId: inner.spanId };
}

const heard = new Log<Saw>();

@Injectable()
class Listeners {
  constructor(private readonly context: ContextService<EntryContext>) {}

  @OnEvent('order.placed')
  inherit(key: string): void {
    heard.push(look(`inherit:${key}`, this.context));
  }

  @OnEvent('order.placed', { async: true })
  asyncOption(key: string): void {
    heard.push(look(`async:${key}`, this.context));
  }

  @ListenerContext('fresh')
  @OnEvent('order.placed')
  fresh(key: string): void {
    heard.push(look(`fresh:${key}`, this.context));
  }
}

@Controller()
class Emitter {
  constructor(
    private readonly events: EventEmitter2,
    private readonly context: ContextService<EntryContext>,
  ) {}

  /** Emits inside a span of its own ('publish'), within the request OTel traces. */
  @Get('emit')
  emit(): { correlationId: string; traceId: string; spanId: string; publishSpanId: string } {
    const publishSpanId = trace.getTracer('test').startActiveSpan('publish', (span) => {
      this.events.emit('order.placed', 'http');
      span.end();
      return span.spanContext().spanId;
    });
    return { correlationId: this.context.correlationId ?? '', traceId: this.context.trace!.traceId, spanId: this.context.trace!.spanId, publishSpanId };
  }
}

describe('OpenTelemetry SDK + nestjs-context: @OnEvent() listeners', () => {
  let otel: OtelSdk;
  let app: INestApplication;
  let url: string;
  let events: EventEmitter2;

  beforeAll(async () => {
    otel = startOtel();
    @Module({
      imports: [ContextModule.forRoot(EntryContext), ContextOpenTelemetryModule.forRoot(), EventEmitterModule.forRoot(), ContextEventEmitterModule.forRoot()],
      controllers: [Emitter],
      providers: [Listeners],
    })
    class AppModule {}
    app = await bootApp(AppModule, () => new ExpressAdapter());
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    events = app.get(EventEmitter2);
  });
  afterAll(async () => {
    await app?.close();
    await otel?.shutdown();
  });

  it('an event emitted outside any context but inside a span: the listeners\' fresh contexts adopt that span (async listeners too)', async () => {
    const span = trace.getTracer('test').startActiveSpan('emitter', (s) => {
      events.emit('order.placed', 'in-span');
      s.end();
      return s.spanContext();
    });
    for (const listener of ['inherit', 'async', 'fresh']) {
      const [saw] = await heard.wait(`${listener}:in-span`);
      expect({ listener, source: saw!.source, traceId: saw!.traceId, spanId: saw!.spanId }).toEqual({ listener, source: 'event', traceId: span.traceId, spanId: span.spanId });
      expect(saw!.line).toEqual({ correlationId: saw!.correlationId, traceId: span.traceId, spanId: span.spanId });
      // a span started in the listener is a child of the emitter's span; its lines show it
      const inner = (await otel.until((s) => s.some((x) => x.spanContext().spanId === saw!.innerSpanId))).find((x) => x.spanContext().spanId === saw!.innerSpanId)!;
      expect(inner.parentSpanContext?.spanId).toBe(span.spanId);
      expect(saw!.innerLine).toEqual({ correlationId: saw!.correlationId, traceId: span.traceId, spanId: saw!.innerSpanId });
    }
  });

  it("emitted inside a span within a request: inheriting listeners keep the request's record (lines show the active span), a fresh one adopts the span", async () => {
    otel.exporter.reset();
    const res = await fetch(`${url}/emit`, { headers: { [OUTSIDE]: '1' } });
    expect(res.status).toBe(200);
    const request = (await res.json()) as { correlationId: string; traceId: string; spanId: string; publishSpanId: string };
    const spans = await otel.until((s) => s.some((span) => span.kind === SpanKind.SERVER));
    const server = spans.find((span) => span.kind === SpanKind.SERVER) as ReadableSpan;
    expect([request.traceId, request.spanId]).toEqual([server.spanContext().traceId, server.spanContext().spanId]);
    for (const listener of ['inherit', 'async']) {
      const [saw] = await heard.wait(`${listener}:http`);
      // the emitter's context: the request's record, which adopted the server span
      expect({ listener, correlationId: saw!.correlationId, source: saw!.source, traceId: saw!.traceId, spanId: saw!.spanId }).toEqual({
        listener,
        correlationId: request.correlationId,
        source: 'http',
        traceId: request.traceId,
        spanId: request.spanId,
      });
      // a line written there shows the span active when it is written: the emitter's 'publish' span
      expect(saw!.line).toEqual({ correlationId: request.correlationId, traceId: request.traceId, spanId: request.publishSpanId });
    }
    const [fresh] = await heard.wait('fresh:http');
    expect(fresh!.correlationId).not.toBe(request.correlationId);
    expect([fresh!.source, fresh!.traceId, fresh!.spanId]).toEqual(['event', request.traceId, request.publishSpanId]);
    expect(fresh!.line).toEqual({ correlationId: fresh!.correlationId, traceId: request.traceId, spanId: request.publishSpanId });
  });

  it("an event emitted outside any context and any span: the library's own trace, no span of OTel's", async () => {
    events.emit('order.placed', 'no-span');
    const [saw] = await heard.wait('fresh:no-span');
    expect(saw!.source).toBe('event');
    expect(saw!.line).toEqual({ correlationId: saw!.correlationId, traceId: saw!.traceId, spanId: saw!.spanId });
    expect(otel.spans().map((s) => s.spanContext().spanId)).not.toContain(saw!.spanId);
    expect(otel.spans().map((s) => s.spanContext().traceId)).not.toContain(saw!.traceId);
  });
});

const runs = new Log<Saw>();

@Injectable()
class Jobs {
  constructor(private readonly context: ContextService<EntryContext>) {}

  @Interval('otel-interval', 40)
  every(): void {
    runs.push(look('interval', this.context));
  }

  @Cron('* * * * * *')
  everySecond(): void {
    runs.push(look('cron', this.context));
  }
}

describe('OpenTelemetry SDK + nestjs-context: @Cron() and @Interval() runs (no span at these entries)', () => {
  let otel: OtelSdk;
  let app: INestApplicationContext;

  beforeAll(async () => {
    otel = startOtel();
    @Module({
      imports: [ContextModule.forRoot(EntryContext), ContextOpenTelemetryModule.forRoot(), ScheduleModule.forRoot(), ContextScheduleModule.forRoot()],
      providers: [Jobs],
    })
    class AppModule {}
    app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  });
  afterAll(async () => {
    await app?.close();
    await otel?.shutdown();
  });

  it.each([
    ['interval', 3],
    ['cron', 1],
  ])("every %s run gets the library's own trace (none of OTel's spans); lines show it, and a span started in the run", async (key, count) => {
    const list = (await runs.wait(key, count, 5000)).slice(0, count);
    expect(new Set(list.map((run) => run.traceId)).size).toBe(count);
    const exported = await otel.until((s) => list.every((run) => s.some((span) => span.spanContext().spanId === run.innerSpanId)));
    for (const run of list) {
      expect(run.source).toBe('schedule');
      expect(run.line).toEqual({ correlationId: run.correlationId, traceId: run.traceId, spanId: run.spanId });
      expect(exported.map((s) => s.spanContext().spanId)).not.toContain(run.spanId);
      // OTel's context had no span: a span started in the run is the root of a trace of OTel's own
      const inner = exported.find((span) => span.spanContext().spanId === run.innerSpanId) as ReadableSpan;
      expect(inner.parentSpanContext).toBeUndefined();
      expect(run.innerLine).toEqual({ correlationId: run.correlationId, traceId: inner.spanContext().traceId, spanId: run.innerSpanId });
    }
  });
});
