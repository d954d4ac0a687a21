/**
 * The real OpenTelemetry SDK for the interop tests: a tracer provider exporting to memory, the
 * AsyncLocalStorage context manager, the http and undici instrumentations and, as an SDK user
 * would configure it, OTel's W3C trace-context propagator composed with the library's
 * ContextPropagator. The globals are registered by the test (never by the library) and undone by
 * {@link OtelSdk.shutdown}.
 */
import nodeHttp, { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { ContextPropagator } from '../../src/integrations/opentelemetry/index.js';

/** The header the test's own client requests carry so that OTel leaves them uninstrumented (an inbound call from outside). */
export const OUTSIDE = 'x-test-outside';

function hasOutsideHeader(headers: unknown): boolean {
  if (typeof headers === 'string') return headers.toLowerCase().includes(`${OUTSIDE}:`);
  if (Array.isArray(headers)) return headers.some((h) => String(h).toLowerCase() === OUTSIDE);
  if (headers !== null && typeof headers === 'object') return Object.keys(headers).some((k) => k.toLowerCase() === OUTSIDE);
  return false;
}

export interface OtelSdk {
  readonly exporter: InMemorySpanExporter;
  readonly http: HttpInstrumentation;
  readonly undici: UndiciInstrumentation;
  /** Finished spans so far. */
  spans(): ReadableSpan[];
  /** Waits (by turns of the event loop, bounded) until `done(spans)` holds; returns the spans. */
  until(done: (spans: ReadableSpan[]) => boolean): Promise<ReadableSpan[]>;
  shutdown(): Promise<void>;
}

/** One span as an OTLP/HTTP JSON export carries it (ids in hex). */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}

/** A small OTLP/HTTP receiver on loopback: collects the spans of every JSON export posted to it. */
export interface OtlpReceiver {
  readonly url: string;
  readonly spans: OtlpSpan[];
  /** Waits (by turns of the event loop, bounded) until `done(spans)` holds. */
  until(done: (spans: OtlpSpan[]) => boolean): Promise<OtlpSpan[]>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: OtlpSpan[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const payload = JSON.parse(body) as { resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[] };
      for (const resource of payload.resourceSpans ?? []) for (const scope of resource.scopeSpans ?? []) spans.push(...(scope.spans ?? []));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    spans,
    async until(done) {
      for (let i = 0; i < 5000 && !done(spans); i++) await new Promise((resolve) => setImmediate(resolve));
      return spans;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export function startOtel(withContextPropagator = true, otlpUrl?: string): OtelSdk {
  const exporter = new InMemorySpanExporter();
  const processors = [new SimpleSpanProcessor({ exporter })];
  if (otlpUrl !== undefined) processors.push(new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url: otlpUrl }) }));
  const provider = new TracerProvider({ spanProcessors: processors });
  const manager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(manager);
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: withContextPropagator ? [new W3CTraceContextPropagator(), new ContextPropagator()] : [new W3CTraceContextPropagator()] }),
  );
  const http = new HttpInstrumentation({
    // the OTLP receiver's own requests would be traced, exported, received, traced…
    ignoreIncomingRequestHook: (request) => request.url === '/v1/traces',
    ignoreOutgoingRequestHook: (options) => hasOutsideHeader((options as { headers?: unknown }).headers),
  });
  const undici = new UndiciInstrumentation({ ignoreRequestHook: (request) => hasOutsideHeader(request.headers) });
  // Jest loads modules (and answers createRequire) through its own loader, which OTel's require
  // hook never sees. Under `node --import` the hook applies the instrumentation's patch to node:http
  // itself; here the test applies that same patch to the real module (jest hands out Node's own
  // built-ins, so its Server.prototype is the one every server of the process uses).
  const httpDefinition = http.getModuleDefinitions().find((definition) => definition.name === 'http');
  if (httpDefinition?.patch === undefined) throw new Error('@opentelemetry/instrumentation-http has no http module definition: check its version');
  httpDefinition.patch(nodeHttp, process.versions.node);
  const spans = () => exporter.getFinishedSpans();
  return {
    exporter,
    http,
    undici,
    spans,
    async until(done) {
      for (let i = 0; i < 1000 && !done(spans()); i++) await new Promise((resolve) => setImmediate(resolve));
      return spans();
    },
    async shutdown() {
      httpDefinition.unpatch?.(nodeHttp, process.versions.node);
      http.disable();
      undici.disable();
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
