/**
 * The real OpenTelemetry SDK for the interop tests: a tracer provider exporting to memory, the
 * AsyncLocalStorage context manager, the http and undici instrumentations and, as an SDK user
 * would configure it, OTel's W3C trace-context propagator composed with the library's
 * ContextPropagator. The globals are registered by the test (never by the library) and undone by
 * {@link OtelSdk.shutdown}.
 */
import nodeHttp from 'node:http';
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

export function startOtel(withContextPropagator = true): OtelSdk {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const manager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(manager);
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: withContextPropagator ? [new W3CTraceContextPropagator(), new ContextPropagator()] : [new W3CTraceContextPropagator()] }),
  );
  const http = new HttpInstrumentation({
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
