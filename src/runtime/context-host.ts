import type { IncomingMessage, ServerResponse } from 'node:http';
import { Inject, Injectable, Logger, Optional, type ExecutionContext, type Type } from '@nestjs/common';
import { CONTEXT_CLASS, CONTEXT_INTERCEPTOR_ON, CONTEXT_MODULE_OPTIONS, MINTED_ID_KEY, RECORD_KEY } from '../constants.js';
import { resolveOptions, type ResolvedContextOptions } from './options.js';
import { ContextRecord, isContextRecord, recordOfRequest, storage } from '../record/context-record.js';
import { collectCarrier, getterLookup, headerMapGetter, TRACE_FIELDS, type Carrier, type CarrierGetter, type Lookup } from '../propagation/carrier.js';
import type { Trust } from './options.js';
import type { ContextSource } from '../interfaces/context-init.interface.js';
import type { ContextModuleOptions } from '../interfaces/context-module-options.interface.js';
import { exposeOnWriteHead } from '../entry/client-headers.js';
import { generateCorrelationId, readCorrelationId } from '../propagation/correlation-id.js';
import { ContextCallbackError } from '../errors.js';
import { linkOptions } from './apps.js';
import { describeError } from './options.js';
import type { HttpEnter } from '../entry/http-entry.js';
import { adoptableId, markInternal } from './internal.js';
import { forgetParsedBaggage } from '../propagation/baggage.js';

/** A request object as the adapters hand it out: Node's own, or Fastify's wrapper with `.raw`. */
type AnyRequest = IncomingMessage & { [RECORD_KEY]?: ContextRecord; raw?: IncomingMessage & { [RECORD_KEY]?: ContextRecord } };
type AnyResponse = { raw?: ServerResponse } & Partial<Pick<ServerResponse, 'setHeader' | 'headersSent'>>;

type Anchor = { [RECORD_KEY]?: ContextRecord };

/** Reads inbound propagation metadata (header-like) from a handler's first two arguments (see {@link ContextHost.setExtractor}). @internal */
export type CarrierExtractor = (data: unknown, transport: unknown) => Carrier | undefined;


/** Options of {@link ContextHost.create}. @internal */
export interface OpenOptions<T> {
  correlationId?: string;
  context?: T;
  source?: ContextSource;
  /** What the entry has of the operation (a job object), for an instrumentation's id to adopt (see `adoptableId`). */
  anchor?: object;
  /**
   * Decide the generated id on its first read rather than now: for an entry that opens its context
   * before an instrumentation opens its own operation inside it (a gateway message under
   * `@nestjs/observe`), so that the record can adopt that operation's id. Ignored with `correlationId` or `context`.
   */
  deferId?: boolean;
}

/** How {@link ContextHost.fromCarrier} reads one carrier, beyond the defaults. @internal */
export interface CarrierEntry {
  /** Trust the carrier whatever the app's policy says. Default: `false`. */
  trusted?: boolean;
  /** The correlation id headers, in priority order. Default: the app's `requestHeaders`. */
  idHeaders?: readonly string[];
  /** Where an instrumentation may have left the id it minted (a message's transport context, a job). Default: the request. */
  anchor?: object;
  /** Without an inbound id, decide the generated one on first read (see {@link OpenOptions.deferId}). */
  deferId?: boolean;
}

/** Options of {@link ContextHost.continueFrom}. @internal */
export interface ContinueOptions<T, C> extends OpenOptions<T> {
  /** Reads the carrier's fields; default: own properties of a header map, any spelling. */
  getter?: CarrierGetter<C>;
  /** Trust the carrier whatever the app's policy says (the caller knows where it comes from). */
  trusted?: boolean;
}

/**
 * The per-app engine behind every access path: it turns requests into records, reads the inbound
 * correlation id, echoes it, and opens contexts for `run()`. A singleton; nothing in it is request-scoped.
 * @internal
 */
@Injectable()
export class ContextHost<T extends object = object> {
  readonly options: ResolvedContextOptions<T>;
  /**
   * Whether the HTTP entry itself answers a request whose entry failed (500), because no interceptor
   * of this module will (see {@link ContextRecord.failure}).
   */
  readonly answersFailures: boolean;
  private readonly extractors = new Map<ContextSource, CarrierExtractor>();
  /** The inbound fields every entry reads: the W3C ones and the app's correlation id headers. */
  readonly inboundFields: readonly string[];
  /** The app's correlation id headers among {@link inboundFields} (every candidate of them is kept). */
  readonly idFields: ReadonlySet<string>;
  /** Undo steps of everything this app installed, run in reverse order when it closes. */
  private readonly closers: (() => void)[] = [];
  private isClosed = false;

  constructor(
    @Inject(CONTEXT_CLASS) readonly contextClass: Type<T>,
    @Inject(CONTEXT_MODULE_OPTIONS) options: ContextModuleOptions<T>,
    @Optional() @Inject(CONTEXT_INTERCEPTOR_ON) interceptorOn?: boolean,
  ) {
    this.options = resolveOptions(contextClass, options);
    this.answersFailures = interceptorOn === false;
    const ids = this.options.requestHeaders.map((name) => name.toLowerCase());
    this.inboundFields = Object.freeze([...new Set([...TRACE_FIELDS, ...ids])]);
    this.idFields = new Set(ids.filter((name) => !TRACE_FIELDS.includes(name)));
    linkOptions(this.options as ResolvedContextOptions<object>, this as ContextHost);
  }

  /** Whether the app was closed (its entry, wrappers and bindings are gone). */
  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Registers an undo step of something this app installed (an entry, a wrapper, a patch); it runs
   * when the app closes, in reverse order of registration. Registered after the close, it runs at once.
   */
  onClose(undo: () => void): void {
    if (this.isClosed) runUndo(undo);
    else this.closers.push(undo);
  }

  /** Runs every undo step (called once when the app closes). A failing step is reported and the rest still run. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (let i = this.closers.length - 1; i >= 0; i--) runUndo(this.closers[i] as () => void);
    this.closers.length = 0;
    forgetParsedBaggage(); // the last inbound baggage header, shared by every app's records
  }

  /**
   * Opens the record of an HTTP request before the framework sees it (see `mountContext`) and
   * echoes its id; the caller runs the rest of the request inside it.
   */
  readonly enterHttp: HttpEnter = (req: IncomingMessage, res: ServerResponse): ContextRecord<T> =>
    this.forHttp(req as AnyRequest, res);

  /** Returns the request's record, creating it on first call, and echoes the id once a response is at hand. */
  forHttp(req: AnyRequest, res?: AnyResponse): ContextRecord<T> {
    const raw = req.raw ?? req;
    let record = recordOfRequest(raw, this.options) as ContextRecord<T> | undefined;
    if (record === undefined) {
      // First entry of this app for the request; another app's record (a mounted app's outer app) stays below.
      record = this.fromCarrier(raw.headers, 'http', raw);
      record.outer = raw[RECORD_KEY];
      raw[RECORD_KEY] = record;
    }
    if (res !== undefined && !record.echoed) this.echo(record, res);
    return record;
  }

  private echo(record: ContextRecord<T>, res: AnyResponse): void {
    record.echoed = true;
    const name = this.options.responseHeader;
    const out = res.raw ?? res;
    if (name === undefined || out.headersSent !== false) return;
    try {
      out.setHeader?.(name, record.correlationId);
      // correlationId.exposeHeader: merged into Access-Control-Expose-Headers when the head is written.
      if (this.options.exposeHeader) exposeOnWriteHead(out as ServerResponse, name);
    } catch (error) {
      // Unreachable with the library's checks (ids are header-safe); a response object of another
      // framework could still refuse the header: the request goes on without the echo.
      reportFailure(ContextCallbackError.create('response header echo', `failed: ${describeError(error)}`, error, 'The response goes out without the id header.'));
    }
  }

  /**
   * The record for a Nest execution context: the request's for HTTP; for messages the one anchored
   * on the transport's per-message context object, else the active one, else a new one built from
   * the message's metadata (see {@link setExtractor}).
   */
  forExecution(ctx: ExecutionContext): ContextRecord<T> {
    const type = ctx.getType();
    // getArgByIndex rather than switchToHttp(), which allocates three closures on every call.
    if (type === 'http') return this.forHttp(ctx.getArgByIndex<AnyRequest>(0), ctx.getArgByIndex<AnyResponse>(1));
    return this.forMessage(type, ctx.getArgByIndex(0), ctx.getArgByIndex(1));
  }

  /** The record for whatever Nest injects as `REQUEST` into a request-scoped provider. */
  forInjectedRequest(request: unknown): ContextRecord<T> {
    if (request !== null && typeof request === 'object') {
      if ('headers' in request) return this.forHttp(request as AnyRequest, (request as { res?: AnyResponse }).res);
      if ('pattern' in request && 'context' in request) {
        // Microservices: Nest injects { pattern, data, context } for request-scoped providers.
        const { data, context } = request as { data?: unknown; context: unknown };
        return this.forMessage('rpc', data, context);
      }
    }
    return (storage.getStore() as ContextRecord<T> | undefined) ?? this.create({ source: 'rpc' });
  }

  /**
   * The record of one message (`type` is Nest's context type, e.g. `'rpc'` or `'ws'`). For `'rpc'`
   * it is anchored on the transport's per-message context object, so every access path of that
   * message shares it.
   */
  forMessage(type: ContextSource, data: unknown, transport: unknown): ContextRecord<T> {
    const anchor = type === 'rpc' && transport !== null && typeof transport === 'object' ? (transport as Anchor) : undefined;
    // A record of another app (another ContextModule in this process) is never reused.
    let record = anchoredRecord(anchor) as ContextRecord<T> | undefined;
    if (record !== undefined && record.config === this.options) return record;
    record = storage.getStore() as ContextRecord<T> | undefined;
    if (record !== undefined && record.config !== this.options) record = undefined;
    if (record === undefined) {
      const carrier = this.extract(type, data, transport);
      record = carrier === undefined ? this.create({ source: type, correlationId: this.mintedFor(anchor) }) : this.fromCarrier(carrier, type, undefined, { anchor });
    }
    if (anchor !== undefined) {
      try {
        anchor[RECORD_KEY] = record;
      } catch {
        // A frozen or proxied transport context cannot hold it: this message's access paths then
        // share the record through the active context only.
      }
    }
    return record;
  }

  /**
   * The inbound correlation id this app would accept for a new context from `carrier` — its trust
   * policy (predicates evaluated on `request`; without one they trust nothing), its id headers and
   * `validate` — without opening one; `undefined` when there is none, or when a callback throws (the
   * entry reports that when it opens the context). For an instrumentation that names a request or
   * message before the library's context exists (`nestjs-context/observe`).
   */
  acceptedId(carrier: Carrier | undefined, request?: IncomingMessage): string | undefined {
    if (carrier === undefined) return undefined;
    const o = this.options;
    try {
      if (!o.trustsAll && !new TrustCache(request).allows(o.trustCorrelationId)) return undefined;
      return readCorrelationId(carrier, o.requestHeaders, o.validate);
    } catch {
      return undefined;
    }
  }

  /**
   * The inbound metadata of a message as this app's entry reads it (the extractor registered for
   * `type`, see {@link setExtractor}); `undefined` when it carries none or no extractor is registered.
   */
  messageCarrier(type: ContextSource, data: unknown, transport: unknown): Carrier | undefined {
    return this.extract(type, data, transport);
  }

  /** Runs the extractor registered for `type`; one that throws counts as no metadata (a fresh context). */
  private extract(type: ContextSource, data: unknown, transport: unknown): Carrier | undefined {
    try {
      return this.extractors.get(type)?.(data, transport);
    } catch {
      return undefined;
    }
  }

  /**
   * Registers how inbound propagation metadata is read for messages of one Nest context type
   * (integrations call this; the last registration wins). The extractor gets the handler's first two
   * arguments as Nest passes them — `'rpc'`: payload, transport context; `'ws'`: socket, payload —
   * and returns header-like metadata, or `undefined`.
   * It must not throw; malformed metadata should yield `undefined` (a fresh context).
   */
  setExtractor(type: ContextSource, extractor: CarrierExtractor): void {
    this.extractors.set(type, extractor);
  }

  /**
   * Creates a record from inbound propagation headers (HTTP headers or message metadata in the
   * normalized {@link Carrier} form), honouring the trust policy for each kind; the trust predicates
   * receive `request` (HTTP only; without a request a predicate policy trusts nothing).
   * `how.trusted` overrides the policy for a carrier the app vouches for by where it comes from (its
   * own job store, a consumer's explicit choice). The correlation id is the first value among the
   * headers `how.idHeaders` (default: the app's request headers; in order, a header may hold several
   * candidates) that passes `validate`; without one, the id an instrumentation minted for this
   * request (on `request`, or on `how.anchor` for a message; see `MINTED_ID_KEY`) is adopted, else
   * the id of the instrumentation's operation this entry runs in (see `adoptableId`), else one is
   * generated. Trace and baggage are read from the carrier on first use. A failing callback
   * gives a record with a default id and no inbound data, reported once through Nest's logger.
   */
  fromCarrier(carrier: Carrier, source: ContextSource, request?: IncomingMessage, how?: CarrierEntry): ContextRecord<T> {
    try {
      return this.readCarrier(carrier, source, request, how);
    } catch (error) {
      return this.failed(source, request, error);
    }
  }

  /**
   * The record of an entry that reads its inbound data through lookups over its own carrier (a
   * transport's metadata, a user's carrier and getter): the app's inbound fields are collected into
   * the normalized form and read as in {@link fromCarrier}; none present gives a fresh record.
   */
  fromLookups(lookups: readonly Lookup[], source: ContextSource, trusted = false): ContextRecord<T> {
    const carrier = collectCarrier(lookups, this.inboundFields, this.idFields);
    return carrier === undefined ? this.create({ source }) : this.fromCarrier(carrier, source, undefined, { trusted });
  }

  /**
   * Opens a record continued from any header-like carrier (`contextService.run(fn, { headers })`):
   * read through `getter`, under the app's trust policy unless `trusted`. A given `correlationId`
   * (already validated) wins over the carrier's; a given `context` is used as the user's object.
   */
  continueFrom<C>(carrier: C, options: ContinueOptions<T, C>): ContextRecord<T> {
    const lookup = getterLookup(carrier, options.getter ?? (headerMapGetter as CarrierGetter<C>));
    const normalized = collectCarrier([lookup], this.inboundFields, this.idFields);
    const source = options.source ?? 'manual';
    if (normalized === undefined) return this.create({ ...options, source });
    const read = this.fromCarrier(normalized, source, undefined, { trusted: options.trusted === true });
    if ((options.correlationId === undefined && options.context === undefined) || read.failure !== undefined) return read;
    // The same inbound data under the same trust, with the caller's id and object.
    const id = options.correlationId ?? read.correlationId;
    const given = options.context === undefined ? undefined : this.options.fill(options.context, id);
    return read.withIdentity(id, given);
  }

  private readCarrier(carrier: Carrier, source: ContextSource, request: IncomingMessage | undefined, how: CarrierEntry | undefined): ContextRecord<T> {
    const o = this.options;
    const idHeaders = how?.idHeaders ?? o.requestHeaders;
    const anchor = how === undefined || !('anchor' in how) ? request : how.anchor;
    if (how?.trusted === true || o.trustsAll) {
      const id = readCorrelationId(carrier, idHeaders, o.validate);
      return new ContextRecord<T>(o, id ?? this.idWithout(source, anchor, how?.deferId === true, request, carrier), source, request, carrier, carrier);
    }
    const cache = new TrustCache(request);
    const id = cache.allows(o.trustCorrelationId) ? readCorrelationId(carrier, idHeaders, o.validate) : undefined;
    return new ContextRecord<T>(
      o,
      id ?? this.idWithout(source, anchor, how?.deferId === true, request, carrier),
      source,
      request,
      cache.allows(o.trustTrace) ? carrier : undefined,
      cache.allows(o.trustBaggage) ? carrier : undefined,
    );
  }

  /**
   * The record of an entry whose option callback failed: a default id, no inbound data, the failure
   * reported once through Nest's logger. On HTTP the failure is kept on the record, so that the
   * request answers 500 (see {@link ContextRecord.failure}); other entries just go on in it.
   */
  private failed(source: ContextSource, request: IncomingMessage | undefined, error: unknown): ContextRecord<T> {
    const failure = asCallbackError(error);
    reportFailure(failure);
    const record = new ContextRecord<T>(this.options, generateCorrelationId(), source, request, undefined, undefined);
    if (source === 'http') record.failure = failure;
    return record;
  }

  /**
   * Creates a record outside HTTP (manual runs, jobs, messages without metadata): with the given id,
   * else the id of the instrumentation's operation this entry runs in (see `adoptableId`), else a
   * generated one (`deferId`: decided so on first read). Never throws for a failing generator.
   */
  create(options: OpenOptions<T> = {}): ContextRecord<T> {
    const source = options.source ?? 'manual';
    if (options.correlationId === undefined && options.context === undefined && options.deferId === true) {
      return new ContextRecord<T>(this.options, () => this.adoptedFor(source, options.anchor) ?? this.generate(source), source, undefined, undefined, undefined);
    }
    const id = options.correlationId ?? this.adoptedFor(source, options.anchor) ?? this.generate(source);
    const given = options.context === undefined ? undefined : this.options.fill(options.context, id);
    return new ContextRecord<T>(this.options, id, source, undefined, undefined, undefined, given);
  }

  /**
   * The id of a record whose carrier gave none: the id an instrumentation minted for this request or
   * message, else the id of its operation this entry runs in, else the app's generator's (which may
   * throw here: {@link fromCarrier} reports it). `defer`: all of that on the id's first read instead
   * (a failing generator then gives the default id, reported).
   */
  private idWithout(source: ContextSource, anchor: object | undefined, defer: boolean, request: IncomingMessage | undefined, carrier: Carrier): string | (() => string) {
    if (defer) return () => this.mintedFor(anchor) ?? this.adoptedFor(source, anchor) ?? this.generate(source, request, carrier);
    return this.mintedFor(anchor) ?? this.adoptedFor(source, anchor) ?? this.options.generate(source, request, carrier);
  }

  /**
   * The id of the instrumentation's operation a new context of `source` runs in (see `adoptableId`;
   * `nestjs-context/observe`), when it passes the app's `validate`; `undefined` otherwise. Never for
   * HTTP: its entry opens the context before any instrumentation's operation, so what it would find
   * belongs to something else (Observe asks the library for the request's id instead).
   */
  private adoptedFor(source: ContextSource, anchor: object | undefined): string | undefined {
    if (source === 'http') return undefined;
    const id = adoptableId(source, anchor);
    if (id === undefined) return undefined;
    try {
      return this.options.validate(id) ? id : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The id an instrumentation that saw this request or message first minted for it (see
   * `MINTED_ID_KEY`), when it passes the app's `validate`; `undefined` otherwise (no anchor, no id,
   * an id the app refuses, or a validator that throws — then the app generates one as usual).
   */
  private mintedFor(anchor: object | undefined): string | undefined {
    if (anchor === undefined) return undefined;
    try {
      const id = (anchor as { [MINTED_ID_KEY]?: unknown })[MINTED_ID_KEY];
      return typeof id === 'string' && this.options.validate(id) ? id : undefined;
    } catch {
      return undefined;
    }
  }

  /** A fresh correlation id from the app's generator; the default one (reported) when that fails. */
  generate(source: ContextSource = 'manual', request?: IncomingMessage, headers?: Carrier): string {
    try {
      return this.options.generate(source, request, headers);
    } catch (error) {
      reportFailure(asCallbackError(error));
      return generateCorrelationId();
    }
  }
}

const logger = new Logger('ContextModule');

function runUndo(undo: () => void): void {
  try {
    undo();
  } catch (error) {
    logger.error(`Undoing an install step on app.close() failed: ${describeError(error)}`, error instanceof Error ? error.stack : undefined);
  }
}

/** Logs a failed option callback once, with its stack, through Nest's logger. @internal */
export function reportFailure(error: Error): void {
  try {
    let stack: string | undefined;
    try {
      const cause = (error as { cause?: unknown }).cause;
      stack = cause instanceof Error && typeof cause.stack === 'string' ? cause.stack : error.stack;
    } catch {
      stack = error.stack; // the thrown value's stack getter throws: the wrapper's own stack
    }
    logger.error(error.message, stack);
  } catch {
    // A logger that throws must not take the request down either; nothing more can be reported.
  }
}

function asCallbackError(error: unknown): ContextCallbackError {
  return error instanceof ContextCallbackError
    ? error
    : ContextCallbackError.create('context entry', `failed: ${describeError(error)}`, error);
}

/** The record anchored on a transport context, if it can be read (a throwing Proxy cannot). */
function anchoredRecord(anchor: Anchor | undefined): ContextRecord | undefined {
  if (anchor === undefined) return undefined;
  try {
    const record = anchor[RECORD_KEY];
    return isContextRecord(record) ? record : undefined;
  } catch {
    return undefined;
  }
}

/** Evaluates trust predicates at most once per distinct predicate for one request. */
class TrustCache {
  private last: Trust;
  private lastResult = false;
  constructor(private readonly request: IncomingMessage | undefined) {}

  allows(trust: Trust): boolean {
    if (trust === undefined) return true;
    if (trust === false || this.request === undefined) return false;
    if (trust !== this.last) {
      this.last = trust;
      this.lastResult = trust(this.request) === true;
    }
    return this.lastResult;
  }
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextHost);
