/**
 * `nestjs-context/opentelemetry`: one trace with the OpenTelemetry SDK. The record adopts OTel's
 * active span at every entry, log lines carry the active span's ids, OTel's instrumentation is the
 * single writer of `traceparent`/`tracestate`/`baggage`, and {@link ContextPropagator} (composed in
 * the SDK's propagator) carries the correlation id and the declared baggage fields on every
 * instrumented call. Depends on `@opentelemetry/api` only; never registers anything globally.
 *
 * @module nestjs-context/opentelemetry
 */
import { Inject, Injectable, Module, Optional, type DynamicModule } from '@nestjs/common';
import {
  baggageEntryMetadataFromString,
  context as otelContext,
  createContextKey,
  propagation,
  ROOT_CONTEXT,
  trace,
  type Baggage,
  type BaggageEntry,
  type Context,
  type Span,
  type SpanContext,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
  type TraceState,
} from '@opentelemetry/api';
import { ContextHost } from '../../runtime/context-host.js';
import { hostOrThrow } from '../../runtime/apps.js';
import { storage, type ContextRecord } from '../../record/context-record.js';
import { setTraceSource, type LogTraceIds, type OutboundKind, type TraceSource } from '../../record/trace-source.js';
import type { CarrierSetter } from '../../propagation/carrier.js';
import type { BaggageMember, TraceInfo } from '../../interfaces/trace-info.interface.js';
import { formatBaggage, isCanonicalBaggage, parseBaggageOnce } from '../../propagation/baggage.js';
import { FLAG_RANDOM, FLAG_SAMPLED, formatTraceparent } from '../../propagation/traceparent.js';
import { formatTracestate, parseTracestate, updateTracestate, type TraceStateEntries } from '../../propagation/tracestate.js';
import { ContextConfigError } from '../../errors.js';
import { isValidSpanId, isValidTraceId } from '../../propagation/ids.js';
import { validHexId, validSpanContext } from './span-ids.js';

/** Options of {@link ContextOpenTelemetryModule.forRoot}. */
export interface ContextOpenTelemetryOptions {
  /**
   * Where the trace comes from. `'auto'` (default): OpenTelemetry's active span when there is a
   * valid one at the entry (the record adopts its trace id, span id, flags and tracestate, and the
   * library writes no trace headers of its own while OTel has a span), else the library's own W3C
   * handling. `'context'`: always the library's own (as without this module).
   */
  traceSource?: 'auto' | 'context';
  /**
   * Who writes the trace headers of the fetch and axios integrations while OTel has a span.
   * `'instrumentation'` (default): OTel's http/undici instrumentation (the integrations add only the
   * correlation id, and not even that when {@link ContextPropagator} is in the SDK's propagator).
   * `'inject'`: the integrations inject OTel's active context themselves (for an SDK set up without
   * those instrumentations). Transports and jobs, which OTel does not instrument, always inject it.
   */
  httpClients?: 'instrumentation' | 'inject';
  /**
   * Whether log lines written through the library's logging integrations get trace and span ids.
   * `true` (default): the active OTel span's, else the record's. Set `false` when OTel's own
   * pino/winston instrumentation adds them, so that no key appears twice.
   */
  logTraceIds?: boolean;
  /** A span attribute set on the entry span to the correlation id, e.g. `'correlation_id'`. Default: none. */
  correlationIdAttribute?: string;
}

/** Options of {@link ContextPropagator}. */
export interface ContextPropagatorOptions {
  /**
   * The correlation id headers this propagator reads on extraction (first present wins) and
   * reports in `fields()`. Default: `['x-request-id']`, the library's default. On injection it
   * writes the active app's own outbound header.
   */
  correlationIdHeaders?: readonly string[];
}

const CORRELATION_ID_KEY = createContextKey('nestjs-context correlation id');
/** The trace id of an extracted `traceparent` whose random flag (Level 2) was set. */
const RANDOM_TRACE_KEY = createContextKey('nestjs-context random trace id');
/** Set on the probe context with which the library asks whether the SDK's propagator includes a ContextPropagator. */
const PROBE_KEY = createContextKey('nestjs-context propagator probe');
const PROBE_FIELD = 'x-nestjs-context-probe';
const PROBE_CONTEXT = ROOT_CONTEXT.setValue(PROBE_KEY, true);
const MAX_HEADER = 8192;

/**
 * The correlation id that {@link ContextPropagator} extracted into an OpenTelemetry context
 * (unvalidated, as received), or `undefined`. The library's own entries read the headers themselves;
 * this is for code of yours that only has OTel's context (a consumer instrumented by OTel).
 */
export function extractedCorrelationId(ctx: Context = otelContext.active()): string | undefined {
  const value = ctx.getValue(CORRELATION_ID_KEY);
  return typeof value === 'string' ? value : undefined;
}

function firstString(value: unknown): string | undefined {
  const first: unknown = Array.isArray(value) ? (value as unknown[])[0] : value;
  return typeof first === 'string' && first.length > 0 && first.length <= MAX_HEADER ? first : undefined;
}

/** The declared baggage fields of the record's object, current values (none before the object exists). */
function declaredMembers(record: ContextRecord): BaggageMember[] {
  const fields = record.config.baggage.fields;
  const value = fields.length === 0 ? undefined : record.contextIfCreated();
  if (value === undefined) return [];
  const out: BaggageMember[] = [];
  const source = value as Record<string, unknown>;
  for (const [field, key] of fields) {
    const v = source[field];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out.push({ key, value: String(v) });
  }
  return out;
}

/**
 * OTel's baggage in `ctx` with the active record's declared fields merged in (their current values
 * win), as one `baggage` value (`''` when empty), under the record's app limits.
 */
function mergedBaggage(ctx: Context, record: ContextRecord | undefined): string {
  const declared = record === undefined ? [] : declaredMembers(record);
  const keys = new Set(declared.map((member) => member.key));
  const members: BaggageMember[] = [...declared];
  const bag = propagation.getBaggage(ctx);
  if (bag !== undefined) {
    for (const [key, entry] of bag.getAllEntries()) {
      if (keys.has(key)) continue;
      const properties = entry.metadata?.toString();
      members.push(properties === undefined || properties === '' ? { key, value: entry.value } : { key, value: entry.value, properties });
    }
  }
  return members.length === 0 ? '' : formatBaggage(members, record?.config.baggage.limits);
}

/**
 * The library's `TextMapPropagator`: compose it with OTel's trace-context propagator in the SDK's
 * configuration, in place of `W3CBaggagePropagator`. On injection it writes the active context's
 * correlation id header and one `baggage` header: OTel's baggage merged with the app's declared
 * baggage fields — so a plain instrumented `fetch` or `http` call carries them, and no call carries
 * two. On extraction it reads `baggage` into OTel's baggage (as `W3CBaggagePropagator` does) and the
 * correlation id into the context (see {@link extractedCorrelationId}); the library's entries read
 * the correlation id from the headers themselves. Placed after `W3CTraceContextPropagator`, it also
 * keeps the trace context to W3C Level 2 where OTel's propagator alone does not (the inbound
 * `tracestate` list, the random flag). Stateless: one instance serves every app.
 *
 * @example
 * propagation.setGlobalPropagator(new CompositePropagator({
 *   propagators: [new W3CTraceContextPropagator(), new ContextPropagator()],
 * }));
 */
export class ContextPropagator implements TextMapPropagator {
  private readonly headers: readonly string[];

  constructor(options: ContextPropagatorOptions = {}) {
    const headers = options.correlationIdHeaders ?? ['x-request-id'];
    if (!Array.isArray(headers) || headers.some((h) => typeof h !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(h))) {
      throw ContextConfigError.create('ContextPropagator: option correlationIdHeaders must be an array of header names', "Use e.g. ['x-request-id'].");
    }
    this.headers = Object.freeze(headers.map((h) => h.toLowerCase()));
  }

  /** Writes the correlation id header and the merged `baggage` (see the class). Never throws. */
  inject(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
    try {
      if (ctx.getValue(PROBE_KEY) === true) {
        setter.set(carrier, PROBE_FIELD, '1');
        return;
      }
      randomFlag(ctx, carrier, setter);
      const record = storage.getStore();
      const baggage = mergedBaggage(ctx, record);
      if (baggage !== '') setter.set(carrier, 'baggage', baggage);
      const header = record?.config.outboundHeader;
      if (record !== undefined && header !== undefined) setter.set(carrier, header, record.correlationId);
    } catch {
      // A carrier that refuses a header: the call goes out without it.
    }
  }

  /**
   * Reads `baggage` into OTel's baggage and the correlation id into the context, and makes the
   * remote span context that OTel's trace-context propagator extracted before it follow W3C Trace
   * Context Level 2 (its Level 2 corrections: a broken `tracestate` list dropped whole, Level 2 keys accepted, the random flag kept). Never throws.
   */
  extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
    let out = ctx;
    try {
      out = levelTwo(out, carrier, getter);
      const header = firstString(getter.get(carrier, 'baggage'));
      if (header !== undefined) {
        // A canonical header holds at least one member: OTel's baggage is built from it when first
        // read (most requests never read it). Any other is parsed now, to set none when it holds none.
        if (isCanonicalBaggage(header)) out = propagation.setBaggage(out, new HeaderBaggage(header));
        else {
          const members = parseBaggageOnce(header);
          if (members.length > 0) out = propagation.setBaggage(out, otelBaggage(members));
        }
      }
      for (const name of this.headers) {
        const id = firstString(getter.get(carrier, name));
        if (id !== undefined) {
          out = out.setValue(CORRELATION_ID_KEY, id);
          break;
        }
      }
    } catch {
      // A getter that throws: nothing more is extracted.
    }
    return out;
  }

  /** `baggage` and the correlation id headers. */
  fields(): string[] {
    return ['baggage', ...this.headers];
  }
}

/** OTel's baggage of parsed members (properties as OTel's entry metadata). */
function otelBaggage(members: readonly BaggageMember[]): Baggage {
  const entries: Record<string, BaggageEntry> = Object.create(null) as Record<string, BaggageEntry>;
  for (const m of members) {
    entries[m.key] = m.properties === undefined ? { value: m.value } : { value: m.value, metadata: baggageEntryMetadataFromString(m.properties) };
  }
  return propagation.createBaggage(entries);
}

/**
 * OTel's baggage of an inbound `baggage` header, parsed and built on its first read: what
 * `W3CBaggagePropagator` would have set, without the cost for requests whose baggage nobody reads
 * through OTel. The header is parsed once for this and the request's record.
 */
class HeaderBaggage implements Baggage {
  private built: Baggage | undefined;

  constructor(private readonly header: string) {}

  private get bag(): Baggage {
    return (this.built ??= otelBaggage(parseBaggageOnce(this.header)));
  }

  getEntry(key: string): BaggageEntry | undefined {
    return this.bag.getEntry(key);
  }

  getAllEntries(): [string, BaggageEntry][] {
    return this.bag.getAllEntries();
  }

  setEntry(key: string, entry: BaggageEntry): Baggage {
    return this.bag.setEntry(key, entry);
  }

  removeEntry(key: string): Baggage {
    return this.bag.removeEntry(key);
  }

  removeEntries(...keys: string[]): Baggage {
    return this.bag.removeEntries(...keys);
  }

  clear(): Baggage {
    return this.bag.clear();
  }
}

/**
 * A `tracestate` that the library parsed: OTel's `TraceState` over the library's entries, so that
 * serializing it gives back what the library's own handling would send.
 */
class EntriesTraceState implements TraceState {
  constructor(readonly entries: TraceStateEntries) {}

  set(key: string, value: string): TraceState {
    try {
      return new EntriesTraceState(updateTracestate(this.entries, key, value));
    } catch {
      return this; // an invalid key or value: OTel's own TraceState ignores it too
    }
  }

  unset(key: string): TraceState {
    return new EntriesTraceState(this.entries.filter(([k]) => k !== key));
  }

  get(key: string): string | undefined {
    return this.entries.find(([k]) => k === key)?.[1];
  }

  serialize(): string {
    return formatTracestate(this.entries);
  }
}

/**
 * OTel's `W3CTraceContextPropagator` (3.x) is Level 1 and lenient: it drops a `tracestate` member it
 * cannot parse and keeps the rest (the spec drops the whole list: a member breaking the grammar,
 * more than 32 members), rejects keys the Level 2 grammar allows (`foo@`, `a@@b`, 256 characters
 * with `@`), and its spans lose the random flag of a continued trace. When it extracted a remote
 * span context from this carrier's `traceparent`, this puts back the `tracestate` as the library
 * parses it (none when the list is invalid) and notes a random flag, which {@link randomFlag}
 * writes again on the outgoing `traceparent`. One pass: the `traceparent` is not parsed again (its
 * ids are checked where OTel read them, its flags are OTel's), and a request without `tracestate`
 * (most) leaves the context as it is.
 */
function levelTwo(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
  const sc = trace.getSpanContext(ctx);
  if (sc === undefined || !sc.isRemote || !fromTraceparent(getter.get(carrier, 'traceparent'), sc)) return ctx;
  const header = getter.get(carrier, 'tracestate');
  let out = ctx;
  if ((header !== undefined && header !== '') || sc.traceState !== undefined) {
    const entries = parseTracestate(header);
    const traceState = entries === undefined || entries.length === 0 ? undefined : new EntriesTraceState(entries);
    out = trace.setSpanContext(ctx, { ...sc, traceState });
  }
  return (sc.traceFlags & FLAG_RANDOM) === 0 ? out : out.setValue(RANDOM_TRACE_KEY, sc.traceId);
}

/**
 * Whether `sc` is what OTel's trace-context propagator read from `header`: one header field (a
 * string, or a list of one) whose trace id and parent id are `sc`'s, where its pattern puts them
 * (after at most one whitespace). Another propagator's remote span context (B3, Jaeger) is left alone.
 */
function fromTraceparent(header: string | string[] | undefined, sc: SpanContext): boolean {
  const field: unknown = typeof header === 'string' ? header : Array.isArray(header) && header.length === 1 ? header[0] : undefined;
  if (typeof field !== 'string') return false;
  const at = field.startsWith(sc.traceId, 3) ? 3 : field.startsWith(sc.traceId, 4) ? 4 : -1;
  return at > 0 && field.charCodeAt(at + 32) === 0x2d && field.startsWith(sc.spanId, at + 33);
}

/**
 * Sets the random flag again on the `traceparent` that OTel's trace-context propagator (earlier in
 * the composite) wrote for a span of a trace that arrived with it: the flag says the trace id is
 * random, which holds for every span of the trace, but OTel's sampler gives new spans the sampled
 * bit only. Writes nothing when the SDK's propagator has no `traceparent` field, nor for ids that
 * the header's format refuses (OTel takes upper-case ids from another tracer; `traceparent` is lower
 * case): OTel's own header stays, and the rest of the injection goes on.
 */
function randomFlag(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
  const sc = trace.getSpanContext(ctx);
  if (sc === undefined || (sc.traceFlags & FLAG_RANDOM) !== 0 || ctx.getValue(RANDOM_TRACE_KEY) !== sc.traceId) return;
  if (!isValidTraceId(sc.traceId) || !isValidSpanId(sc.spanId)) return;
  if (!propagation.fields().includes('traceparent')) return;
  setter.set(carrier, 'traceparent', formatTraceparent(sc.traceId, sc.spanId, sc.traceFlags | FLAG_RANDOM));
}

/** Whether the propagator OTel uses now includes a {@link ContextPropagator} (asked with a probe context). */
function sdkHasContextPropagator(): boolean {
  const probe: Record<string, string> = {};
  try {
    propagation.inject(PROBE_CONTEXT, probe, { set: (c, k, v) => void ((c as Record<string, string>)[k] = v) });
  } catch {
    return false;
  }
  return probe[PROBE_FIELD] === '1';
}

/**
 * Whether an SDK has registered a propagator that writes `traceparent` (an app that imports the
 * module but starts no SDK has OTel's no-op one, and then the library writes its own headers).
 */
function otelPropagatesTrace(): boolean {
  try {
    return propagation.fields().includes('traceparent');
  } catch {
    return false;
  }
}

/** The active span in `ctx`, if it has a valid span context. */
function validSpan(ctx: Context): Span | undefined {
  const span = trace.getSpan(ctx);
  return span !== undefined && validSpanContext(span.spanContext()) ? span : undefined;
}

const NO_TRACESTATE: TraceInfo['tracestate'] = Object.freeze([]);

/**
 * The record's trace adopted from an OTel span whose span context `sc` is valid: its ids, flags and
 * tracestate; the parent from the SDK's span when it tells.
 */
function traceInfoOf(span: Span, sc: SpanContext): TraceInfo {
  let parent: Pick<SpanContext, 'spanId' | 'isRemote'> | undefined;
  try {
    // The SDK's spans expose their parent (2.x and 3.x: its span context; 1.x: its span id only);
    // the API does not promise either. A parent is in its child's trace: one whose trace id is
    // another is not taken.
    const sdkSpan = span as { parentSpanContext?: unknown; parentSpanId?: unknown };
    const candidate = sdkSpan.parentSpanContext as Partial<SpanContext> | null | undefined;
    if (candidate !== null && typeof candidate === 'object') {
      if (candidate.traceId === sc.traceId && validHexId(candidate.spanId, 16)) parent = candidate as SpanContext;
    } else if (validHexId(sdkSpan.parentSpanId, 16)) parent = { spanId: sdkSpan.parentSpanId as string };
  } catch {
    parent = undefined;
  }
  const flags = sc.traceFlags & (FLAG_SAMPLED | FLAG_RANDOM);
  // The span continues an inbound trace whose tracestate levelTwo() parsed: its entries, not parsed again.
  const state = sc.traceState;
  const members = state instanceof EntriesTraceState ? state.entries : state === undefined ? undefined : parseTracestate(state.serialize());
  return Object.freeze({
    traceId: sc.traceId,
    spanId: sc.spanId,
    parentId: parent?.spanId,
    flags,
    sampled: (flags & FLAG_SAMPLED) !== 0,
    tracestate: members === undefined || members.length === 0 ? NO_TRACESTATE : Object.freeze(members),
    remote: parent?.isRemote === true,
  });
}

const objectSetter: TextMapSetter<Record<string, string>> = { set: (carrier, key, value) => void (carrier[key] = value) };

/** One app's OpenTelemetry trace source (see `record/trace-source.ts`). @internal */
class OpenTelemetryTraceSource implements TraceSource {
  private readonly adopt: boolean;
  private readonly injectHttp: boolean;
  private readonly logTraceIds: boolean;
  private readonly attribute: string | undefined;

  constructor(options: ContextOpenTelemetryOptions) {
    this.adopt = options.traceSource !== 'context';
    this.injectHttp = options.httpClients === 'inject';
    this.logTraceIds = options.logTraceIds !== false;
    this.attribute = options.correlationIdAttribute;
  }

  capture(record: ContextRecord): void {
    try {
      const span = trace.getSpan(otelContext.active());
      if (span === undefined) return;
      if (this.attribute !== undefined && validSpanContext(span.spanContext())) span.setAttribute(this.attribute, record.correlationId);
      // Its span context is checked where it is used (traceOf, run), not here: most records never use it.
      if (this.adopt) record.tracerSpan = span;
    } catch {
      // A tracer that throws: the library's own trace.
    }
  }

  traceOf(record: ContextRecord): TraceInfo | undefined {
    const span = record.tracerSpan as Span;
    const sc = span.spanContext();
    return validSpanContext(sc) ? traceInfoOf(span, sc) : undefined;
  }

  inject<C>(record: ContextRecord, carrier: C, setter: CarrierSetter<C>, kind: OutboundKind): boolean {
    if (!this.adopt) return false;
    if (kind === 'http' && !this.injectHttp && otelPropagatesTrace()) {
      // OTel's instrumentation writes the trace headers (and, with our propagator, the id and baggage),
      // with or without a span active now: with none it starts a trace of its own and still writes
      // them, so writing ours as well would send two of each.
      const header = record.config.outboundHeader;
      if (!sdkHasContextPropagator() && header !== undefined) setter.set(carrier, header, record.correlationId);
      return true;
    }
    const ctx = otelContext.active();
    if (validSpan(ctx) === undefined) return false; // no OTel trace now: the library's own headers
    const ours = sdkHasContextPropagator();
    // Collected first, so that every field is written once through the caller's setter.
    const fields: Record<string, string> = {};
    propagation.inject(ctx, fields, objectSetter);
    if (!ours) {
      const baggage = mergedBaggage(ctx, record);
      if (baggage !== '') fields.baggage = baggage;
      const header = record.config.outboundHeader;
      if (header !== undefined) fields[header] = record.correlationId;
    }
    for (const name of Object.keys(fields)) setter.set(carrier, name, fields[name] as string);
    return true;
  }

  run<R>(record: ContextRecord, fn: () => R): R {
    const span = record.tracerSpan as Span | undefined;
    if (span === undefined) return fn();
    let ctx: Context | undefined;
    try {
      const active = otelContext.active();
      ctx = trace.getSpan(active) === span || !validSpanContext(span.spanContext()) ? undefined : trace.setSpan(active, span);
    } catch {
      ctx = undefined; // a tracer that throws: the record alone
    }
    return ctx === undefined ? fn() : otelContext.with(ctx, fn);
  }

  logIds(): LogTraceIds | null | undefined {
    if (!this.logTraceIds) return null;
    if (!this.adopt) return undefined;
    const span = validSpan(otelContext.active());
    if (span === undefined) return undefined;
    const sc = span.spanContext();
    return { traceId: sc.traceId, spanId: sc.spanId };
  }
}

const OPTIONS = Symbol('nestjs-context:opentelemetry-options');

function checkOptions(options: ContextOpenTelemetryOptions): ContextOpenTelemetryOptions {
  const where = 'ContextOpenTelemetryModule.forRoot()';
  if (options === null || typeof options !== 'object') throw ContextConfigError.create(`${where}: options must be an object`, 'Pass e.g. { traceSource: \'auto\' } or nothing.');
  if (options.traceSource !== undefined && options.traceSource !== 'auto' && options.traceSource !== 'context') {
    throw ContextConfigError.create(`${where}: option traceSource must be 'auto' or 'context', got ${String(options.traceSource)}`, "Leave it out for 'auto'.");
  }
  if (options.httpClients !== undefined && options.httpClients !== 'instrumentation' && options.httpClients !== 'inject') {
    throw ContextConfigError.create(`${where}: option httpClients must be 'instrumentation' or 'inject', got ${String(options.httpClients)}`, "Leave it out for 'instrumentation'.");
  }
  if (options.logTraceIds !== undefined && typeof options.logTraceIds !== 'boolean') {
    throw ContextConfigError.create(`${where}: option logTraceIds must be a boolean`, 'Leave it out for true.');
  }
  if (options.correlationIdAttribute !== undefined && (typeof options.correlationIdAttribute !== 'string' || options.correlationIdAttribute === '')) {
    throw ContextConfigError.create(`${where}: option correlationIdAttribute must be a non-empty string`, "Use e.g. 'correlation_id', or leave it out.");
  }
  return { ...options };
}

/** Registers the app's OpenTelemetry trace source for the app's lifetime. @internal */
@Injectable()
class OpenTelemetryInstaller {
  constructor(@Optional() @Inject(ContextHost) host: ContextHost | undefined, @Inject(OPTIONS) options: ContextOpenTelemetryOptions) {
    const app = hostOrThrow(host, 'ContextOpenTelemetryModule');
    const config = app.options;
    setTraceSource(config, new OpenTelemetryTraceSource(options));
    app.onClose(() => setTraceSource(config, undefined));
  }
}

/**
 * Makes the app's context one trace with OpenTelemetry (see {@link ContextOpenTelemetryOptions}).
 * Import it beside `ContextModule` in every app of a process that runs the OTel SDK; set the SDK up
 * yourself (this module registers nothing with OTel) and put a {@link ContextPropagator} in its
 * propagator so instrumented calls carry the correlation id and the declared baggage fields.
 *
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext), ContextOpenTelemetryModule.forRoot()] })
 */
@Module({})
export class ContextOpenTelemetryModule {
  /** Registers the integration for this app (global). */
  static forRoot(options: ContextOpenTelemetryOptions = {}): DynamicModule {
    return {
      module: ContextOpenTelemetryModule,
      global: true,
      providers: [{ provide: OPTIONS, useValue: checkOptions(options) }, OpenTelemetryInstaller],
      exports: [],
    };
  }
}
