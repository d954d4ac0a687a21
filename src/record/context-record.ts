import { AsyncLocalStorage } from 'node:async_hooks';
import { isObservable, Observable } from 'rxjs';
import { RECORD_KEY } from '../constants.js';
import type { IncomingMessage } from 'node:http';
import { ContextCreationError } from '../errors.js';
import type { ResolvedContextOptions } from '../runtime/options.js';
import type { ContextInit, ContextSource } from '../interfaces/context-init.interface.js';
import type { BaggageMember, TraceInfo } from '../interfaces/trace-info.interface.js';
import { parseBaggage, parseBaggageOnce } from '../propagation/baggage.js';
import type { Carrier } from '../propagation/carrier.js';
import type { OutboundParts } from '../propagation/inject.js';
import { randomSpanId, randomTraceId } from '../propagation/ids.js';
import { generateCorrelationId } from '../propagation/correlation-id.js';
import { FLAG_RANDOM, FLAG_SAMPLED, parseTraceparent } from '../propagation/traceparent.js';
import { parseTracestate } from '../propagation/tracestate.js';
import { runInTracerSpan, traceSourceOf } from './trace-source.js';

/** The inbound carrier type, for the entries that import it with the record. @internal */
export type { Carrier } from '../propagation/carrier.js';

const CREATING = 1;
const CREATED = 2;
const FAILED = 3;
const NO_MEMBERS: readonly BaggageMember[] = Object.freeze([]);
const NO_TRACESTATE: TraceInfo['tracestate'] = Object.freeze([]);

/**
 * The library's state for one request, message or job: the correlation id, the trace, the baggage
 * and the user's context, each worked out on first use. One record per request; the user's object
 * is never mixed with it, and the record holds no reference back to anything that holds it once the
 * context is built.
 * @internal
 */
export class ContextRecord<T extends object = object> {
  private state = 0;
  private value: T | Error | undefined;
  private traceInfo: TraceInfo | undefined;
  private members: readonly BaggageMember[] | undefined;
  /** Whether the correlation id was echoed on the response (HTTP only). */
  echoed = false;
  /**
   * Set when an option callback failed while this HTTP request was entered (the record then has a
   * default id and no inbound data): the interceptor, or the entry when there is none, answers 500.
   */
  failure: Error | undefined = undefined;
  /** The record of another app that entered the same HTTP request first (a mounted app's outer app). */
  outer: ContextRecord | undefined = undefined;
  /** What every outgoing call from this record shares, worked out on the first one (see `propagation/inject.ts`). */
  outbound: OutboundParts | undefined = undefined;
  /**
   * The tracer's span this record adopted at its entry, set by the app's trace source (`TraceSource.capture`):
   * its trace becomes the record's on first use, and the source re-enters it (`TraceSource.run`).
   */
  tracerSpan: object | undefined = undefined;
  /** What `nestjs-context/sql` keeps between this record's statements (its comment around the parent id). */
  sqlComment: object | undefined = undefined;
  /** The correlation id, once decided (see {@link correlationId}). */
  private id: string | undefined;
  /** Decides the correlation id on its first read, for a record whose id is deferred. */
  private decideId: (() => string) | undefined;

  constructor(
    /** The app's resolved options (shared by all its records). */
    readonly config: ResolvedContextOptions<T>,
    /**
     * The correlation id of this request; or the function that decides it on first read (an entry
     * that opens its context before an instrumentation opens its own operation inside, whose id the
     * record can then adopt; see `ContextHost.create`). Must not throw.
     */
    correlationId: string | (() => string),
    /** What opened the context. */
    readonly source: ContextSource,
    private request: IncomingMessage | undefined,
    /** Inbound headers trusted for trace context, read on first use. */
    private traceCarrier: Carrier | undefined,
    /** Inbound headers trusted for baggage, read on first use. */
    private baggageCarrier: Carrier | undefined,
    given?: T,
  ) {
    if (typeof correlationId === 'string') this.id = correlationId;
    else this.decideId = correlationId;
    traceSourceOf(config)?.capture(this);
    if (given !== undefined) {
      this.state = CREATED;
      this.value = given;
    }
  }

  /** The correlation id of this request (a deferred one is decided now, on its first read). */
  get correlationId(): string {
    return this.id ?? this.decide();
  }

  private decide(): string {
    const decide = this.decideId;
    this.decideId = undefined;
    // Unreachable without a decider (the constructor sets one or the other); a default id all the same.
    return (this.id = decide === undefined ? generateCorrelationId() : decide());
  }

  /** Whether the user's context object exists yet (it is built on first read). */
  get created(): boolean {
    return this.state === CREATED;
  }

  /** Whether building the user's context object failed (every read of {@link context} rethrows the error). */
  get failed(): boolean {
    return this.state === FAILED;
  }

  /** The user's context object, built on the first read; a failed build is rethrown on every read. */
  get context(): T {
    if (this.state === CREATED) return this.value as T;
    if (this.state === FAILED) throw this.value as Error;
    if (this.state === CREATING) {
      throw ContextCreationError.create(
        'context',
        'the context class or factory read the context while it was being created; ' +
          'take what it needs from its ContextInit argument instead.',
      );
    }
    this.state = CREATING;
    const init: ContextInit = { correlationId: this.correlationId, source: this.source, request: this.request };
    this.request = undefined;
    try {
      const value = this.config.factory(init);
      this.fillFromBaggage(value);
      this.value = value;
      this.state = CREATED;
      return value;
    } catch (error) {
      this.value = error instanceof Error ? error : new Error(String(error));
      this.state = FAILED;
      throw this.value;
    }
  }

  /**
   * A record of the same inbound trace and baggage (not read yet) and source, with another
   * correlation id and, optionally, the user's object given.
   */
  withIdentity(correlationId: string, given?: T): ContextRecord<T> {
    return new ContextRecord<T>(this.config, correlationId, this.source, undefined, this.traceCarrier, this.baggageCarrier, given);
  }

  /** The user's context object if it has been built, else `undefined` (never builds it, never throws). */
  contextIfCreated(): T | undefined {
    return this.state === CREATED ? (this.value as T) : undefined;
  }

  /** The W3C trace of this request: continued from a valid inbound `traceparent`, or new. */
  get trace(): TraceInfo {
    return (this.traceInfo ??= this.readTrace());
  }

  /**
   * The trusted inbound `baggage` header as it came, while it has not been parsed yet (one header
   * field; `undefined` when there is none, several, or once {@link baggage} has read it).
   */
  get rawBaggage(): string | undefined {
    const header = this.baggageCarrier?.baggage;
    return typeof header === 'string' ? header : undefined;
  }

  /** The inbound baggage members (`[]` when none, or when baggage is not trusted). */
  get baggage(): readonly BaggageMember[] {
    if (this.members !== undefined) return this.members;
    const header = this.baggageCarrier?.baggage;
    this.baggageCarrier = undefined;
    return (this.members = header === undefined ? NO_MEMBERS : typeof header === 'string' ? parseBaggageOnce(header) : Object.freeze(parseBaggage(header)));
  }

  private readTrace(): TraceInfo {
    const carrier = this.traceCarrier;
    this.traceCarrier = undefined;
    if (this.tracerSpan !== undefined) {
      let adopted: TraceInfo | undefined;
      try {
        adopted = traceSourceOf(this.config)?.traceOf(this);
      } catch {
        adopted = undefined; // a tracer that throws while its span is read: the library's own trace
      }
      if (adopted !== undefined) return adopted;
    }
    const parent = carrier === undefined ? undefined : parseTraceparent(carrier.traceparent);
    if (parent !== undefined) {
      const flags = parent.flags & (FLAG_SAMPLED | FLAG_RANDOM);
      const members = parseTracestate(carrier?.tracestate);
      return Object.freeze({
        traceId: parent.traceId,
        spanId: randomSpanId(),
        parentId: parent.parentId,
        flags,
        sampled: (flags & FLAG_SAMPLED) !== 0,
        // Most requests carry no tracestate: they share one frozen empty list (freezing costs a runtime call).
        tracestate: members === undefined || members.length === 0 ? NO_TRACESTATE : Object.freeze(members),
        remote: true,
      });
    }
    const sampled = this.config.trace.sampleNewTraces;
    return Object.freeze({
      traceId: randomTraceId(),
      spanId: randomSpanId(),
      parentId: undefined,
      flags: FLAG_RANDOM | (sampled ? FLAG_SAMPLED : 0),
      sampled,
      tracestate: NO_TRACESTATE,
      remote: false,
    });
  }

  /** Fills declared baggage fields the factory left undefined from inbound baggage (own data only). */
  private fillFromBaggage(value: T): void {
    const fields = this.config.baggage.fields;
    if (fields.length === 0) return;
    const members = this.baggage;
    if (members.length === 0) return;
    const target = value as Record<string, unknown>;
    for (const [field, key] of fields) {
      if (target[field] !== undefined) continue;
      const member = members.find((m) => m.key === key);
      if (member !== undefined) target[field] = member.value;
    }
  }
}

/** Marks records on their prototype, so that the ESM and CommonJS builds (and copies of the package) recognise each other's. */
const RECORD_BRAND = Symbol.for('nestjs-context:record-brand');
Object.defineProperty(ContextRecord.prototype, RECORD_BRAND, { value: true });

/**
 * Whether `value` is a record of this library, from any build or copy of the package (`instanceof`
 * would tell only this build's own). Never throws. @internal
 */
export function isContextRecord(value: unknown): value is ContextRecord {
  try {
    return value !== null && typeof value === 'object' && (value as { [RECORD_BRAND]?: unknown })[RECORD_BRAND] === true;
  } catch {
    return false;
  }
}

const STORAGE_KEY = Symbol.for('nestjs-context:storage');
type Holder = { [STORAGE_KEY]?: AsyncLocalStorage<ContextRecord> };

/**
 * The one AsyncLocalStorage of the process. It lives on `globalThis` under a registered symbol so
 * that the ESM and CommonJS builds of this package (and two copies of it) share it.
 * @internal
 */
export const storage: AsyncLocalStorage<ContextRecord> = ((globalThis as Holder)[STORAGE_KEY] ??=
  new AsyncLocalStorage<ContextRecord>());

type RecordHolder = { [RECORD_KEY]?: ContextRecord; raw?: { [RECORD_KEY]?: ContextRecord } | null };

/**
 * The one way to find the record an HTTP request carries: on Node's request, or on the `.raw` one of
 * Fastify's wrapper. With `config`, the record of that app (a request that went through a mounted
 * app carries one record per app, the latest on top). Never throws.
 * @internal
 */
export function recordOfRequest(request: unknown, config?: object): ContextRecord | undefined {
  if (request === null || typeof request !== 'object') return undefined;
  let record: ContextRecord | undefined;
  try {
    const holder = request as RecordHolder;
    record = holder[RECORD_KEY] ?? holder.raw?.[RECORD_KEY];
  } catch {
    return undefined; // a request object whose properties cannot be read carries nothing usable
  }
  if (!isContextRecord(record)) return undefined;
  if (config !== undefined) while (record !== undefined && record.config !== config) record = record.outer;
  return record;
}

/**
 * The one way to run code inside a record: `fn` runs in it (directly when it is already the active
 * one), and what it returns stays in it — an Observable is subscribed inside the record, a promise's
 * value is kept there too (a promise of an Observable included).
 * @internal
 */
export function runInRecord<R>(record: ContextRecord, fn: () => R): R {
  return keepInRecord(enterRecord(record, fn), record) as R;
}

/**
 * Calls `fn` inside `record` (and the tracer span it adopted at its entry, if any), directly when it
 * is already the active one, and returns what `fn` returned as it is; {@link runInRecord} also keeps
 * that in the record.
 * @internal
 */
export function enterRecord<R>(record: ContextRecord, fn: () => R): R {
  if (storage.getStore() === record) return fn();
  const source = traceSourceOf(record.config);
  return source === undefined ? storage.run(record, fn) : source.run(record, () => storage.run(record, fn));
}

/**
 * What `fn` returned, kept in `record` as {@link runInRecord} keeps it; with `scope` (the async
 * context of an instrumentation's operation that `fn` opened, see `inOperationScope`), an
 * Observable is subscribed inside that operation as well.
 * @internal
 */
export function keepInRecord(result: unknown, record: ContextRecord, scope?: <R>(fn: () => R) => R): unknown {
  if (isObservable(result)) {
    return new Observable<unknown>((subscriber) => {
      // subscribed later, maybe outside the entry's tracer span too (a gateway's handler): both are re-entered
      const subscribe = (): unknown => runInTracerSpan(record, () => storage.run(record, () => result.subscribe(subscriber)));
      return (scope === undefined ? subscribe() : scope(subscribe)) as ReturnType<typeof result.subscribe>;
    });
  }
  if (result instanceof Promise) return result.then((value: unknown) => keepInRecord(value, record, scope));
  return result;
}
