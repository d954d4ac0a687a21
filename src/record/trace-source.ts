import type { TraceInfo } from '../interfaces/trace-info.interface.js';
import type { CarrierSetter } from '../propagation/carrier.js';
import type { ContextRecord } from './context-record.js';

/**
 * Where an app's trace comes from when it is not the library itself: a tracer that already runs in
 * the process (OpenTelemetry, through `nestjs-context/opentelemetry`). An integration registers one
 * per app with {@link setTraceSource}; the record, the outbound injection and the log fields consult
 * it, and without one everything works as the library's own W3C handling says. The root entry never
 * imports a tracer: this is the whole seam.
 * @internal
 */
export interface TraceSource {
  /**
   * Called once when a record is created, at its entry (inside the tracer's entry span, if any): sets
   * `record.tracerSpan` to the span to adopt, or leaves it unset to mint/continue our own trace.
   * Must not throw.
   */
  capture(record: ContextRecord): void;
  /**
   * The trace of the span `capture` set on `record`, read on first use of `record.trace`; `undefined`
   * for the library's own. Called only for a record with a `tracerSpan`.
   */
  traceOf(record: ContextRecord): TraceInfo | undefined;
  /**
   * Writes an outgoing call's propagation fields for a call made now from `record`. `kind` is
   * `'http'` for the HTTP client integrations (fetch, axios), which the tracer's own
   * instrumentation may already cover, and `'carrier'` for everything else (transports, jobs,
   * `inject()`, `getOutboundHeaders()`). Returns `true` when it wrote everything that call carries
   * (then the library writes nothing more), `false` to let the library's own injection run.
   */
  inject<C>(record: ContextRecord, carrier: C, setter: CarrierSetter<C>, kind: OutboundKind): boolean;
  /**
   * The trace and span ids a log line written now gets: `undefined` for the record's own,
   * `null` for none at all (the tracer's log instrumentation adds them).
   */
  logIds(record: ContextRecord): LogTraceIds | null | undefined;
  /**
   * Runs `fn` (exactly once) with the tracer's active span set back to the one the record adopted
   * at its entry, when that one is not active: the part of an entry's pipeline that Nest runs later,
   * outside the tracer's context (a gateway's handler Observable, subscribed after the message's span
   * has left scope), re-enters the record and, through this, its span. Must not throw itself.
   */
  run<R>(record: ContextRecord, fn: () => R): R;
}

/** Which kind of client writes an outgoing call (see {@link TraceSource.inject}). @internal */
export type OutboundKind = 'http' | 'carrier';

/** The ids one log line carries. @internal */
export interface LogTraceIds {
  readonly traceId: string;
  readonly spanId: string;
}

/** The slot on an app's resolved options that holds its trace source (a plain field, so both builds and copies of the package read it). */
interface SourceSlot {
  traceSource: TraceSource | undefined;
}

/**
 * Registers `source` for the app whose resolved options are `config` (`undefined` removes it). The
 * caller undoes it when the app closes (`host.onClose`). @internal
 */
export function setTraceSource(config: object, source: TraceSource | undefined): void {
  (config as SourceSlot).traceSource = source;
}

/**
 * The trace source of the app whose resolved options are `config`, if one is registered: a field
 * load, which every record, outgoing call and log line pays (a WeakMap lookup cost ten times more). @internal
 */
export function traceSourceOf(config: object): TraceSource | undefined {
  return (config as SourceSlot).traceSource;
}

/** Runs `fn` inside the tracer span `record` adopted at its entry, if its app has a trace source (see {@link TraceSource.run}). @internal */
export function runInTracerSpan<R>(record: ContextRecord, fn: () => R): R {
  const source = (record.config as SourceSlot).traceSource;
  return source === undefined ? fn() : source.run(record, fn);
}
