// The OpenTelemetry SDK of the `otel-*` benchmark variants, loaded before the server as a production
// app loads its tracing set-up: `node --import .bench/build/bench/otel.js server.js <variant> <platform>`
// (bench/run.mjs adds the flag for those variants). It must run before express or fastify
// require()s `node:http`: the http instrumentation patches the module on that require (and
// `http.Server.prototype.emit`, through which every server of the process starts its server span).
//
// Set up as docs/opentelemetry.md tells an app to: the AsyncLocalStorage context manager, a tracer
// provider (3.x's `TracerProvider`, formerly `NodeTracerProvider`) with the default sampler
// (parent-based, always on: the benchmark's inbound `traceparent` is sampled, so every request
// records and exports a server span), the http instrumentation with its defaults, and the
// propagator. `otel-bare` (the SDK alone) gets what `@opentelemetry/sdk-node` configures by default,
// W3C trace context + W3C baggage; every other `otel-*` variant gets the interop's set-up, W3C trace
// context + the library's ContextPropagator (which takes the baggage propagator's place).
//
// Spans go through a BatchSpanProcessor, as in production (`NodeSDK`'s default; a
// SimpleSpanProcessor exports each span synchronously as it ends and is meant for tests), exporting
// by size only, to an
// exporter that counts them and drops them: serialising and sending them (OTLP) would cost both
// OTel variants the same and make the counts depend on a collector. The undici instrumentation is
// left out: the benchmark's handlers make no outgoing call, so it would only subscribe to channels.
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, ExportResultCode, W3CBaggagePropagator, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { BatchSpanProcessor, TracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';

/** What the behaviour check reads back over IPC (see bench/server.ts, `inspect`). */
export interface OtelBenchState {
  /** The propagator set up: the SDK's default one or the interop's. */
  readonly propagator: 'w3c' | 'context';
  /** Exports every span still queued; resolves the spans exported so far and the last one's ids. */
  flush(): Promise<{ exported: number; last?: { traceId: string; spanId: string; parentSpanId?: string; kind: number } }>;
}

/** Where bench/server.ts finds the state (the preload and the server share no import). */
export const OTEL_STATE = Symbol.for('nestjs-context.bench.otel');

/** Counts the spans it is given and drops them. */
class CountingExporter implements SpanExporter {
  exported = 0;
  last: ReadableSpan | undefined;

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.exported += spans.length;
    this.last = spans[spans.length - 1] ?? this.last;
    done({ code: ExportResultCode.SUCCESS });
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const variant = process.argv[2] ?? '';
const exporter = new CountingExporter();
// Exports by size only (every 512 spans, the default batch): its timer (5 s by default) would fire at
// a different request in every count, under valgrind all the more, and make the counts unrepeatable.
const provider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: 2_000_000_000 })] });
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(provider);
new HttpInstrumentation();

const interop = variant !== 'otel-bare';
if (interop) {
  // Loaded only now: the library reaches @nestjs/common, which must not load node:http before the
  // instrumentation's hook is in place.
  const { ContextPropagator } = await import('../src/integrations/opentelemetry/index.js');
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new ContextPropagator()] }));
} else {
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
}

const state: OtelBenchState = {
  propagator: interop ? 'context' : 'w3c',
  async flush() {
    await provider.forceFlush();
    const last = exporter.last;
    if (last === undefined) return { exported: exporter.exported };
    const { traceId, spanId } = last.spanContext();
    return { exported: exporter.exported, last: { traceId, spanId, parentSpanId: last.parentSpanContext?.spanId, kind: last.kind } };
  },
};
(globalThis as Record<symbol, unknown>)[OTEL_STATE] = state;
