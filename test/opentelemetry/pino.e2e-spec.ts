import 'reflect-metadata';
import { Controller, Get, Module, Req, type INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import nodeHttp, { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { pinoHttp } from 'pino-http';
import { SpanKind, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { ContextModule, type ContextInit } from '../../src/index.js';
import { contextMixin, pinoHttpContext } from '../../src/integrations/pino/index.js';
import { ContextOpenTelemetryModule } from '../../src/integrations/opentelemetry/index.js';
import { bootApp } from '../utils/platforms.js';
import { captureStream } from '../logging/helpers.js';
import { OUTSIDE, startOtel, type OtelSdk } from './otel-sdk.js';

class PinoContext {
  correlationId: string;
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

type Line = { msg?: string; correlationId?: string; traceId?: string; spanId?: string; raw: string };

/** The app's own logger: pino with the library's mixin. */
const own = captureStream();
const logger = pino({ mixin: contextMixin(), base: undefined, timestamp: false }, own.stream);
/** pino-http's logger, bound to the request's ids at its start (customProps) and given the mixin. */
const http = captureStream();
const target = { url: '' };

/** The request logger of the request being handled (the test sends one at a time). */
const current: { reqLog: pino.Logger | undefined } = { reqLog: undefined };

/**
 * Code that OTel's http instrumentation runs inside an outgoing call's client span: its
 * `requestHook` (the response callback runs in the caller's context, as OTel binds it).
 */
function inClientSpan(request: unknown): void {
  if (!(request instanceof nodeHttp.ClientRequest)) return; // the echo call (the incoming requests are IncomingMessages)
  logger.info('inside the http client span');
  current.reqLog?.info('req.log inside the http client span');
}

/** Calls the echo service with node:http (OTel's http instrumentation makes it a client span). */
function callEcho(): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = nodeHttp.request(target.url, (res) => {
      res.resume();
      res.on('end', () => {
        logger.info('in the response callback');
        resolve();
      });
    });
    req.on('error', reject);
    req.end();
  });
}

@Controller()
class PinoController {
  @Get('work')
  async work(@Req() req: { log: pino.Logger }): Promise<{ traceId: string }> {
    logger.info('in the server span');
    current.reqLog = req.log;
    await callEcho();
    // a database client's span, as an instrumented driver would start it around a query
    trace.getTracer('db-like').startActiveSpan('SELECT orders', { kind: SpanKind.CLIENT }, (span) => {
      logger.info('inside the database span');
      span.end();
    });
    return { traceId: trace.getActiveSpan()?.spanContext().traceId ?? '' };
  }
}

describe('OpenTelemetry SDK + the pino integration: a line shows the span active when it is written', () => {
  let otel: OtelSdk;
  let echo: Server;
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    otel = startOtel();
    otel.http.setConfig({ ...otel.http.getConfig(), requestHook: (_span, request) => inClientSpan(request) });
    echo = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    target.url = `http://127.0.0.1:${(echo.address() as AddressInfo).port}/`;
    @Module({ imports: [ContextModule.forRoot(PinoContext), ContextOpenTelemetryModule.forRoot()], controllers: [PinoController] })
    class AppModule {}
    app = await bootApp(AppModule, () => new ExpressAdapter(), (a) => a.use(pinoHttp({ ...pinoHttpContext(), base: undefined, timestamp: false, stream: http.stream })));
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
    await new Promise((resolve) => echo?.close(resolve));
    await otel?.shutdown();
  });

  it('mixin lines: the server span, the http client span (code OTel runs inside it), the database span; req.log lines stay bound to the server span', async () => {
    const res = await fetch(`${url}/work`, { headers: { [OUTSIDE]: '1' } });
    expect(res.status).toBe(200);
    const { traceId } = (await res.json()) as { traceId: string };
    const spans = await otel.until((s) => s.filter((span) => span.spanContext().traceId === traceId).length >= 4);
    const ofTrace = spans.filter((span) => span.spanContext().traceId === traceId);
    const [server] = ofTrace.filter((span) => span.kind === SpanKind.SERVER && span.parentSpanContext === undefined) as ReadableSpan[];
    const httpClient = ofTrace.find((span) => span.kind === SpanKind.CLIENT && span.name !== 'SELECT orders') as ReadableSpan;
    const database = ofTrace.find((span) => span.name === 'SELECT orders') as ReadableSpan;
    expect(httpClient.parentSpanContext?.spanId).toBe(server!.spanContext().spanId);
    expect(database.parentSpanContext?.spanId).toBe(server!.spanContext().spanId);

    const lines = own.lines().map((raw) => ({ ...(JSON.parse(raw) as Line), raw }));
    const correlationId = lines[0]?.correlationId;
    expect(lines.map((l) => [l.msg, l.correlationId, l.traceId, l.spanId])).toEqual([
      ['in the server span', correlationId, traceId, server!.spanContext().spanId],
      ['inside the http client span', correlationId, traceId, httpClient.spanContext().spanId],
      ['in the response callback', correlationId, traceId, server!.spanContext().spanId],
      ['inside the database span', correlationId, traceId, database.spanContext().spanId],
    ]);
    // pino-http bound the ids once, at the request's start: its lines carry the server span's, each key once
    const bound = http.lines().map((raw) => ({ ...(JSON.parse(raw) as Line), raw }));
    const inClient = bound.find((l) => l.msg === 'req.log inside the http client span') as Line;
    expect([inClient.correlationId, inClient.traceId, inClient.spanId]).toEqual([correlationId, traceId, server!.spanContext().spanId]);
    for (const key of ['correlationId', 'traceId', 'spanId']) expect(inClient.raw.split(`"${key}":`).length - 1).toBe(1);
  });
});
