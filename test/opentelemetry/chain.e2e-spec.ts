import 'reflect-metadata';
import { Controller, Get, Module, Param, Req, type INestApplication } from '@nestjs/common';
import axios from 'axios';
import type { IncomingMessage } from 'node:http';
import { request as rawRequest } from 'node:http';
import { SpanKind, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { createLogFields } from '../../src/integrations/logger/index.js';
import { propagateGlobalFetch } from '../../src/integrations/fetch/index.js';
import { propagateContext } from '../../src/integrations/axios/index.js';
import { ContextOpenTelemetryModule } from '../../src/integrations/opentelemetry/index.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { OUTSIDE, startOtel, startOtlpReceiver, type OtelSdk, type OtlpReceiver, type OtlpSpan } from './otel-sdk.js';

class ChainContext {
  correlationId: string;
  tenant?: string;
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

/** One log line as the library's log fields give it, with the service that wrote it. */
type Line = { service: string; correlationId?: unknown; traceId?: unknown; spanId?: unknown };
const lines: Line[] = [];
const fields = createLogFields();
function log(service: string): void {
  lines.push({ service, ...fields.current() });
}

/** Every value of `name` among a request's raw headers (so a repeated header shows twice). */
function rawValues(req: IncomingMessage, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]?.toLowerCase() === name) out.push(req.rawHeaders[i + 1] as string);
  return out;
}

interface Seen {
  traceparent: string[];
  tracestate: string[];
  baggage: string[];
  requestId: string[];
  correlationId: string;
  traceId: string;
  spanId: string;
  tenant: string | undefined;
}

@Controller()
class EchoController {
  constructor(private readonly context: ContextService<ChainContext>) {}
  @Get('echo')
  echo(@Req() req: IncomingMessage): Seen {
    log('b');
    const raw = (req as { raw?: IncomingMessage }).raw ?? req;
    return {
      traceparent: rawValues(raw, 'traceparent'),
      tracestate: rawValues(raw, 'tracestate'),
      baggage: rawValues(raw, 'baggage'),
      requestId: rawValues(raw, 'x-request-id'),
      correlationId: this.context.correlationId ?? '',
      traceId: this.context.trace!.traceId,
      spanId: this.context.trace!.spanId,
      tenant: this.context.get().tenant,
    };
  }
}

const target = { url: '' };
const axiosClient = propagateContext(axios.create());

@Controller()
class GatewayController {
  constructor(private readonly context: ContextService<ChainContext>) {}
  @Get('via/:client')
  async via(@Param('client') client: string): Promise<{ a: { correlationId: string; traceId: string; spanId: string; parentId?: string }; b: Seen }> {
    this.context.get().tenant = 'acme';
    log('a');
    const b = client === 'axios' ? (await axiosClient.get<Seen>(`${target.url}/echo`)).data : ((await (await fetch(`${target.url}/echo`)).json()) as Seen);
    // a line written inside a span of the app's own (a database call, say) shows that span
    trace.getTracer('test').startActiveSpan('work', (span) => {
      log('a');
      span.end();
    });
    const { traceId, spanId, parentId } = this.context.trace!;
    return { a: { correlationId: this.context.correlationId ?? '', traceId, spanId, parentId }, b };
  }
}

function modules(withOtel: boolean) {
  const otel = withOtel ? [ContextOpenTelemetryModule.forRoot()] : [];
  @Module({ imports: [ContextModule.forRoot(ChainContext, { baggage: { fields: ['tenant'] } }), ...otel], controllers: [EchoController] })
  class EchoModule {}
  @Module({ imports: [ContextModule.forRoot(ChainContext, { baggage: { fields: ['tenant'] } }), ...otel], controllers: [GatewayController] })
  class GatewayModule {}
  return { EchoModule, GatewayModule };
}

/** A call from outside (not instrumented by OTel): raw node:http, so the test controls every header. */
function callFromOutside(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = rawRequest(url, { headers: { ...headers, [OUTSIDE]: '1' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const INBOUND_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const INBOUND_PARENT = '00f067aa0ba902b7';
type Result = { a: { correlationId: string; traceId: string; spanId: string; parentId?: string }; b: Seen };

describe.each(platforms)('OpenTelemetry SDK + nestjs-context, two chained services through fetch and axios (%s)', (_name, makeAdapter) => {
  let otel: OtelSdk;
  let otlp: OtlpReceiver;
  let gateway: INestApplication;
  let echo: INestApplication;
  let gatewayUrl: string;
  let undoFetch: () => void;

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    otel = startOtel(true, otlp.url);
    undoFetch = propagateGlobalFetch();
    const { EchoModule, GatewayModule } = modules(true);
    echo = await bootApp(EchoModule, makeAdapter);
    await echo.listen(0, '127.0.0.1');
    target.url = (await echo.getUrl()).replace('[::1]', '127.0.0.1');
    gateway = await bootApp(GatewayModule, makeAdapter);
    await gateway.listen(0, '127.0.0.1');
    gatewayUrl = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    undoFetch();
    await gateway.close();
    await echo.close();
    await otel.shutdown();
    await otlp.close();
  });
  beforeEach(() => {
    lines.length = 0;
    otel.exporter.reset();
  });

  async function chained(client: string, headers: Record<string, string> = {}): Promise<{ result: Result; spans: ReadableSpan[] }> {
    const res = await callFromOutside(`${gatewayUrl}/via/${client}`, headers);
    expect(res.status).toBe(200);
    const result = JSON.parse(res.body) as Result;
    // Both server spans, the fetch's client span and the app's own span end around the response: wait for the four.
    const spans = await otel.until((s) => s.filter((span) => span.spanContext().traceId === result.a.traceId).length >= 4);
    return { result, spans };
  }

  function checkOneTrace({ result, spans }: { result: Result; spans: ReadableSpan[] }): void {
    const traceId = result.a.traceId;
    const ids = new Set(spans.map((s) => s.spanContext().spanId));
    // every exported span, every log line and both records are one trace
    expect(spans).toHaveLength(4);
    for (const span of spans) expect(span.spanContext().traceId).toBe(traceId);
    expect(lines.map((l) => l.service)).toEqual(['a', 'b', 'a']);
    for (const line of lines) {
      expect(line.traceId).toBe(traceId);
      expect(ids.has(line.spanId as string)).toBe(true); // log span ids are ids of exported spans
      expect(line.correlationId).toBe(result.a.correlationId);
    }
    // the records adopted the server spans: nothing minted of their own
    const servers = spans.filter((s) => s.kind === SpanKind.SERVER);
    const clients = spans.filter((s) => s.kind === SpanKind.CLIENT);
    expect(servers).toHaveLength(2);
    expect(clients).toHaveLength(1);
    const client = clients[0] as ReadableSpan;
    const [bServer] = servers.filter((s) => s.parentSpanContext?.spanId === client.spanContext().spanId);
    const aServer = servers.find((s) => s !== bServer) as ReadableSpan;
    expect(result.a.spanId).toBe(aServer.spanContext().spanId);
    expect(result.b.spanId).toBe(bServer?.spanContext().spanId);
    expect(result.b.traceId).toBe(traceId);
    expect(client.parentSpanContext?.spanId).toBe(aServer.spanContext().spanId);
    // log lines: A's first in its server span, B's in B's server span, A's last in its own 'work' span
    const work = spans.find((s) => s.name === 'work') as ReadableSpan;
    expect(lines.map((l) => l.spanId)).toEqual([aServer.spanContext().spanId, bServer?.spanContext().spanId, work.spanContext().spanId]);
    // on the wire: exactly one traceparent (OTel's, naming the client span), one baggage, one id
    expect(result.b.traceparent).toEqual([`00-${traceId}-${client.spanContext().spanId}-01`]);
    expect(result.b.baggage).toEqual(['tenant=acme']);
    expect(result.b.requestId).toEqual([result.a.correlationId]);
    // declared baggage arrives, the correlation id survives
    expect(result.b.tenant).toBe('acme');
    expect(result.b.correlationId).toBe(result.a.correlationId);
  }

  /** The same spans went over the wire to an OTLP/HTTP receiver, ids and parents as exported in memory. */
  async function checkOtlp({ result, spans }: { result: Result; spans: ReadableSpan[] }): Promise<void> {
    const ofTrace = (all: OtlpSpan[]) => all.filter((s) => s.traceId === result.a.traceId);
    const received = ofTrace(await otlp.until((all) => ofTrace(all).length >= spans.length));
    const asSent = (all: { spanId: string; parentSpanId?: string }[]) => all.map((s) => `${s.spanId}<${s.parentSpanId || '-'}`).sort();
    expect(asSent(received)).toEqual(asSent(spans.map((s) => ({ spanId: s.spanContext().spanId, parentSpanId: s.parentSpanContext?.spanId }))));
    const lineSpans = new Set(lines.map((l) => l.spanId));
    for (const id of lineSpans) expect(received.some((s) => s.spanId === id)).toBe(true);
  }

  it.each(['fetch', 'axios'])('through %s, inbound without traceparent: one trace from OTel, no second one from the library', async (client) => {
    const run = await chained(client);
    checkOneTrace(run);
    await checkOtlp(run);
    expect(run.result.a.parentId).toBeUndefined();
  });

  it.each(['fetch', 'axios'])('through %s, inbound with traceparent: the inbound trace continues through both services', async (client) => {
    const run = await chained(client, { traceparent: `00-${INBOUND_TRACE}-${INBOUND_PARENT}-01`, 'x-request-id': 'req-from-outside' });
    checkOneTrace(run);
    expect(run.result.a.traceId).toBe(INBOUND_TRACE);
    expect(run.result.a.parentId).toBe(INBOUND_PARENT);
    expect(run.result.a.correlationId).toBe('req-from-outside');
    expect(run.result.b.correlationId).toBe('req-from-outside');
  });

  it.each(['fetch', 'axios'])('through %s from a context OTel has no span for (ContextService.run() outside any request): one traceparent and one x-request-id downstream', async (client) => {
    const service = gateway.get<ContextService<ChainContext>>(ContextService);
    const seen = await service.run(
      async () => (client === 'axios' ? (await axiosClient.get<Seen>(`${target.url}/echo`)).data : ((await (await fetch(`${target.url}/echo`)).json()) as Seen)),
      { correlationId: `no-span-${client}` },
    );
    expect(seen.traceparent).toHaveLength(1);
    expect(seen.requestId).toEqual([`no-span-${client}`]);
    expect(seen.correlationId).toBe(`no-span-${client}`);
    expect(seen.traceId).toBe((seen.traceparent[0] as string).split('-')[1]);
  });
});

describe.each(platforms)('ContextOpenTelemetryModule without an OpenTelemetry SDK: exactly the library\'s own W3C handling (%s)', (_name, makeAdapter) => {
  let gateway: INestApplication;
  let echo: INestApplication;
  let gatewayUrl: string;
  let undoFetch: () => void;

  beforeAll(async () => {
    undoFetch = propagateGlobalFetch();
    const { EchoModule, GatewayModule } = modules(true);
    echo = await bootApp(EchoModule, makeAdapter);
    await echo.listen(0, '127.0.0.1');
    target.url = (await echo.getUrl()).replace('[::1]', '127.0.0.1');
    gateway = await bootApp(GatewayModule, makeAdapter);
    await gateway.listen(0, '127.0.0.1');
    gatewayUrl = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    undoFetch();
    await gateway.close();
    await echo.close();
  });
  beforeEach(() => {
    lines.length = 0;
  });

  it.each([
    ['without traceparent', {}],
    ['with traceparent', { traceparent: `00-${INBOUND_TRACE}-${INBOUND_PARENT}-01` }],
  ])('%s: the records own the trace and the library writes every header, once', async (_case, headers: Record<string, string>) => {
    const res = await callFromOutside(`${gatewayUrl}/via/fetch`, headers);
    expect(res.status).toBe(200);
    const { a, b } = JSON.parse(res.body) as Result;
    if (headers.traceparent !== undefined) {
      expect(a.traceId).toBe(INBOUND_TRACE);
      expect(a.parentId).toBe(INBOUND_PARENT);
    }
    expect(b.traceparent).toHaveLength(1);
    const [, traceId, parentId] = (b.traceparent[0] as string).split('-');
    expect(traceId).toBe(a.traceId);
    expect(parentId).not.toBe(a.spanId); // a fresh parent id per call, as without the module
    expect(b.traceId).toBe(a.traceId);
    expect(b.baggage).toEqual(['tenant=acme']);
    expect(b.requestId).toEqual([a.correlationId]);
    expect(b.tenant).toBe('acme');
    // log lines carry the records' own ids
    expect(lines.map((l) => [l.service, l.traceId, l.spanId])).toEqual([
      ['a', a.traceId, a.spanId],
      ['b', a.traceId, b.spanId],
      ['a', a.traceId, a.spanId],
    ]);
  });
});

describe('ContextOpenTelemetryModule.forRoot({ logTraceIds: false }): OTel\'s log instrumentation owns the ids', () => {
  let otel: OtelSdk;
  let gateway: INestApplication;
  let echo: INestApplication;
  let gatewayUrl: string;
  let undoFetch: () => void;

  beforeAll(async () => {
    otel = startOtel();
    undoFetch = propagateGlobalFetch();
    const otelModule = ContextOpenTelemetryModule.forRoot({ logTraceIds: false, correlationIdAttribute: 'correlation_id' });
    @Module({ imports: [ContextModule.forRoot(ChainContext, { baggage: { fields: ['tenant'] } }), otelModule], controllers: [EchoController] })
    class EchoModule {}
    @Module({ imports: [ContextModule.forRoot(ChainContext, { baggage: { fields: ['tenant'] } }), otelModule], controllers: [GatewayController] })
    class GatewayModule {}
    echo = await bootApp(EchoModule, platforms[0][1]);
    await echo.listen(0, '127.0.0.1');
    target.url = (await echo.getUrl()).replace('[::1]', '127.0.0.1');
    gateway = await bootApp(GatewayModule, platforms[0][1]);
    await gateway.listen(0, '127.0.0.1');
    gatewayUrl = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    undoFetch();
    await gateway.close();
    await echo.close();
    await otel.shutdown();
  });

  it('log fields keep the correlation id and leave the trace ids out; the entry spans carry the correlation id', async () => {
    lines.length = 0;
    const res = await callFromOutside(`${gatewayUrl}/via/fetch`);
    expect(res.status).toBe(200);
    const { a } = JSON.parse(res.body) as Result;
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line).toEqual({ service: line.service, correlationId: a.correlationId });
    const spans = await otel.until((s) => s.filter((span) => span.kind === SpanKind.SERVER).length >= 2);
    const servers = spans.filter((span) => span.kind === SpanKind.SERVER);
    expect(servers.map((span) => span.attributes.correlation_id)).toEqual([a.correlationId, a.correlationId]);
  });
});
