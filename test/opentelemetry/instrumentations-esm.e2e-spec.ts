// nestjs-context under the real OpenTelemetry SDK with the instrumentations an ESM NestJS app needs
// OTel's loader hook for: express, @nestjs/core, Fastify (@fastify/otel) and pino, beside http and
// undici.
// Jest's vm modules cannot register a loader hook, so the app runs in its own Node process started
// with `node --import` of the SDK preload (fixtures/otel-preload.ts), which writes every finished
// span to stdout. For Express and Fastify, with and without an inbound `traceparent`: the hook
// worked (the frameworks' and @nestjs/core's spans are exported), one trace holds every span, the
// record, the log line and the outbound call, the record's span is the http server span, the span
// active in the handler (the log line's) is @nestjs/core's handler span, and the correlation id is
// the response's `x-request-id` and the outbound call's. The handler's pino log line has OTel's
// pino instrumentation's `trace_id`/`span_id` (the hook patched pino, CommonJS imported from ESM)
// equal to the library's `traceId`/`spanId`, each key once; with `logTraceIds: false` (Express) it
// has the correlation id and OTel's ids only.
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SpanKind } from '@opentelemetry/api';
import { removeTree, startScript, transpile, type ChildApp } from '../logging/child.js';
import { DEFAULT_ID } from '../utils/ids.js';
import type { Work } from './fixtures/instrumented-app.js';
import type { ExportedSpan } from './fixtures/otel-preload.js';

const HTTP = '@opentelemetry/instrumentation-http';
const UNDICI = '@opentelemetry/instrumentation-undici';
const EXPRESS = '@opentelemetry/instrumentation-express';
const FASTIFY = '@fastify/otel';
const NEST = '@opentelemetry/instrumentation-nestjs-core';
const LOG_TRACE_IDS_OFF = 'logTraceIds=false';

/**
 * The spans from the http server span down to the one active in the handler, platform by platform
 * (@fastify/otel names its handler span after the route handler function, which Nest 11 and 12 name
 * differently).
 */
const CHAINS: Record<string, [scope: string, name: unknown][]> = {
  express: [
    [HTTP, 'GET /work'],
    [EXPRESS, 'request handler'],
    [NEST, 'WorkController.work'],
    [NEST, 'work'],
  ],
  fastify: [
    [HTTP, 'GET /work'],
    [FASTIFY, 'request'],
    [FASTIFY, expect.stringMatching(/^handler - /)],
    [NEST, 'WorkController.work'],
    [NEST, 'work'],
  ],
};

interface LogLine {
  level: number;
  msg: string;
  correlationId?: string;
  traceId?: string;
  spanId?: string;
  // OTel's pino instrumentation's keys.
  trace_id?: string;
  span_id?: string;
  trace_flags?: string;
}

function spansOf(app: ChildApp): ExportedSpan[] {
  return app.lines().filter((line) => line.startsWith('SPAN ')).map((line) => JSON.parse(line.slice('SPAN '.length)) as ExportedSpan);
}

/** The child's pino lines, each parsed and as written (JSON.parse keeps the last of a repeated key). */
function logsOf(app: ChildApp): { line: LogLine; raw: string }[] {
  return app.lines().filter((raw) => raw.startsWith('{')).map((raw) => ({ line: JSON.parse(raw) as LogLine, raw }));
}

/** The spans from `spanId` up through its parents, as far as they are exported (the span itself first). */
function ancestry(spans: readonly ExportedSpan[], spanId: string): ExportedSpan[] {
  const chain: ExportedSpan[] = [];
  for (let span = spans.find((s) => s.spanId === spanId); span !== undefined; span = spans.find((s) => s.spanId === span!.parentSpanId)) chain.push(span);
  return chain;
}

/** Re-reads the child's output until `done` holds (bounded: the assertions that follow say what is missing). */
async function until<T>(read: () => T, done: (value: T) => boolean): Promise<T> {
  let value = read();
  for (let i = 0; i < 1000 && !done(value); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    value = read();
  }
  return value;
}

let out: string | undefined;
let echo: Server;
let echoUrl: string;

beforeAll(async () => {
  out = transpile({ dirs: ['test/opentelemetry/fixtures'] });
  // The handler's outbound call: answers with the trace and correlation headers it received.
  echo = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ traceparent: req.headersDistinct['traceparent'] ?? [], requestId: req.headers['x-request-id'] }));
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoUrl = `http://127.0.0.1:${(echo.address() as AddressInfo).port}/echo`;
});
afterAll(async () => {
  await new Promise((resolve) => echo?.close(resolve));
  removeTree(out);
});

describe.each([
  ['express', true],
  ['fastify', true],
  // The mode for apps that leave the log line's trace ids to OTel's pino instrumentation.
  ['express', false],
])('OTel SDK with its ESM loader hook: http, undici, %s, @nestjs/core and pino instrumentations; logTraceIds: %s', (platform, logTraceIds) => {
  let app: ChildApp | undefined;
  let startup: ExportedSpan[] = [];
  const traces: string[] = [];

  beforeAll(async () => {
    const preload = pathToFileURL(join(out as string, 'test/opentelemetry/fixtures/otel-preload.js')).href;
    const args = [platform, echoUrl, ...(logTraceIds ? [] : [LOG_TRACE_IDS_OFF])];
    app = await startScript(out as string, 'test/opentelemetry/fixtures/instrumented-app.js', args, ['--import', preload]);
    startup = spansOf(app);
    app.clear();
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('the loader hook worked: @nestjs/core traced the app creation (a trace of its own)', () => {
    expect(startup.map((span) => [span.scope, span.name, span.parentSpanId])).toEqual([[NEST, 'Create Nest App', undefined]]);
  });

  it.each([false, true])('one trace for the request, the record, the log line and the outbound call; inbound traceparent: %s', async (inbound) => {
    const inboundTrace = randomBytes(16).toString('hex');
    const inboundParent = randomBytes(8).toString('hex');
    const res = await fetch(`${app!.url}/work`, { headers: inbound ? { traceparent: `00-${inboundTrace}-${inboundParent}-01` } : {} });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Work;

    // The correlation id: the response header, the record, the outbound call, the log line.
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(DEFAULT_ID);
    expect(body.correlationId).toBe(id);
    expect(body.echo.requestId).toBe(id);

    // One trace: the record's, the active span's, the outbound call's (exactly one traceparent).
    const traceId = body.record!.traceId;
    traces.push(traceId);
    if (inbound) expect(traceId).toBe(inboundTrace);
    expect(body.active?.traceId).toBe(traceId);
    expect(body.echo.traceparent).toHaveLength(1);
    const [, sentTrace, sentParent] = body.echo.traceparent[0]!.split('-');
    expect(sentTrace).toBe(traceId);

    // Every span of the request has ended once the chain from the active span up to the record's
    // span and the outbound call's span are exported.
    const spans = await until(
      () => spansOf(app!).filter((span) => span.traceId === traceId),
      (s) => s.some((span) => span.spanId === sentParent) && ancestry(s, body.active!.spanId).at(-1)?.spanId === body.record!.spanId,
    );

    // The record adopted OTel's http server span (the entry runs inside it, before the framework).
    const server = spans.find((span) => span.spanId === body.record!.spanId);
    expect(server).toMatchObject({ scope: HTTP, kind: SpanKind.SERVER });
    expect(server!.parentSpanId).toBe(inbound ? inboundParent : undefined);

    // In the handler the active span is @nestjs/core's handler span, below the framework's spans.
    const chain = ancestry(spans, body.active!.spanId).reverse();
    expect(chain.map((span) => [span.scope, span.name])).toEqual(CHAINS[platform]);
    expect(chain.at(-1)!.attributes['nestjs.type']).toBe('handler');

    // The outbound call: undici's client span, a child of the handler span.
    expect(spans.find((span) => span.spanId === sentParent)).toMatchObject({ scope: UNDICI, kind: SpanKind.CLIENT, parentSpanId: body.active!.spanId });

    // The framework instrumentation traced more than the handler (Express middleware, Fastify hooks).
    expect(spans.filter((span) => span.scope === (platform === 'express' ? EXPRESS : FASTIFY)).length).toBeGreaterThan(2);

    // Every span of the trace descends from the server span: one tree, nothing beside it.
    for (const span of spans) expect(ancestry(spans, span.spanId).at(-1)?.spanId).toBe(server!.spanId);

    // The log line written in the handler: the correlation id, and OTel's pino instrumentation's
    // trace and span ids, the active (handler) span's, which the library's, when it writes them, equal.
    const logs = logsOf(app!).filter(({ line }) => line.correlationId === id);
    const otelIds = { trace_id: traceId, span_id: body.active!.spanId, trace_flags: '01' };
    const ours = logTraceIds ? { traceId, spanId: body.active!.spanId } : {};
    expect(logs.map(({ line }) => line)).toEqual([{ level: 30, msg: 'in the handler', correlationId: id, ...ours, ...otelIds }]);
    // Each key once: a repeated key would be dropped by the parse and the re-serialization differ.
    expect(JSON.stringify(logs[0]!.line)).toBe(logs[0]!.raw);
  });

  it('the requests exported spans in their own traces only', () => {
    expect(traces).toHaveLength(2);
    expect([...new Set(spansOf(app!).map((span) => span.traceId))].sort()).toEqual([...traces].sort());
  });
});
