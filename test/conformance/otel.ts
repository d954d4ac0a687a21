import { context, propagation, trace, SpanKind } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { SimpleSpanProcessor, TracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import { ContextPropagator } from '../../src/integrations/opentelemetry/index.js';

/**
 * The OpenTelemetry SDK of the conformance service's interop mode (`CONFORMANCE_OTEL=1`), set up
 * as docs/opentelemetry.md tells an app to: the AsyncLocalStorage context manager, a tracer
 * provider, OTel's W3C trace-context propagator composed with the library's ContextPropagator, and
 * the http and undici instrumentations. It must run before anything loads `node:http` (main.ts
 * imports it first, and Nest only after it): the http instrumentation patches the module when
 * express or fastify require()s it, and the undici one hooks `fetch` through diagnostics_channel.
 */

/** One finished span, as `GET /otel/spans` of the service lists it (hex ids). */
export interface SpanSummary {
  name: string;
  kind: 'server' | 'client' | 'internal' | 'producer' | 'consumer';
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
}

/** How many finished spans the service keeps for `GET /otel/spans` (the oldest are dropped). */
const KEEP = 2000;

const KINDS: Record<SpanKind, SpanSummary['kind']> = {
  [SpanKind.INTERNAL]: 'internal',
  [SpanKind.SERVER]: 'server',
  [SpanKind.CLIENT]: 'client',
  [SpanKind.PRODUCER]: 'producer',
  [SpanKind.CONSUMER]: 'consumer',
};

/** Keeps a summary of the last {@link KEEP} finished spans in memory. */
class SummaryExporter implements SpanExporter {
  readonly spans: SpanSummary[] = [];

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    for (const span of spans) {
      const { traceId, spanId } = span.spanContext();
      this.spans.push({ name: span.name, kind: KINDS[span.kind], traceId, spanId, parentSpanId: span.parentSpanContext?.spanId });
    }
    this.spans.splice(0, Math.max(0, this.spans.length - KEEP));
    done({ code: ExportResultCode.SUCCESS });
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** The running SDK: the spans it finished, and its shutdown. */
export interface ConformanceOtel {
  /** The last finished spans, oldest first. */
  spans(): readonly SpanSummary[];
  shutdown(): Promise<void>;
}

/** Starts the SDK and registers its globals (the service's process owns them; the library never does). */
export function startOtel(): ConformanceOtel {
  const exporter = new SummaryExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new ContextPropagator()] }));
  const instrumentations = [new HttpInstrumentation(), new UndiciInstrumentation()];
  return {
    spans: () => exporter.spans,
    async shutdown() {
      for (const instrumentation of instrumentations) instrumentation.disable();
      await provider.shutdown();
    },
  };
}
