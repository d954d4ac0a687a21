/**
 * `nestjs-context/observe`: one id per request with `@nestjs/observe` — the correlation id and
 * Observe's trace id are the same value — and none of the library's own classes traced as the
 * application's code. Optional peer dependency: `@nestjs/observe`.
 *
 * @module nestjs-context/observe
 */
import type { CreateObserveModuleOptions, ObserveOptions, WsMessageContext } from '@nestjs/observe';
import { MINTED_ID_KEY } from '../../constants.js';
import { isValidCorrelationId } from '../../propagation/correlation-id.js';
import { uuidV7 } from '../../propagation/ids.js';
import type { IncomingMessage } from 'node:http';
import { recordOfRequest, type Carrier } from '../../record/context-record.js';
import { liveApps } from '../../runtime/apps.js';
import type { ContextHost } from '../../runtime/context-host.js';
import type { ContextSource } from '../../interfaces/context-init.interface.js';
import { STALE, addIdAdopter, addJobIdOption, addTraceIdReader, instrumentationTraceId, isInternal, offerOperationScope } from '../../runtime/internal.js';

/** The headers read for an inbound id where no context of ours exists yet: the library's defaults. */
const INBOUND_HEADERS = ['x-request-id', 'x-correlation-id'] as const;

/** The job option in which `@nestjs/observe` stamps the enqueuing operation's id on a job (its `JOB_TRACE_OPTION_KEY`). */
const JOB_TRACE_OPTION = 'observeTraceId';

/** The ids `@nestjs/observe` takes from a job's stamp or a request's header (its `REQUEST_ID_PATTERN`). */
const OBSERVE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The entries where `@nestjs/observe` opens its own operation, under an id it mints without asking
 * `traceIdGenerator`, before the library's context opens: gateway messages, `@nestjs/schedule` runs
 * and BullMQ jobs (which inherit the id stamped on them when they were added, see {@link adoptable}).
 */
const MINTING_ENTRIES: ReadonlySet<ContextSource> = new Set(['ws', 'schedule', 'bullmq']);

/**
 * Options of {@link contextObserveOptions}: those of `createObserveModule()`, and the `ws` options of
 * `ObserveModule.forRoot()` (give them here: a `ws` given to `forRoot()` replaces the one
 * `contextObserveOptions()` sets, Observe merging the two shallowly).
 */
export type ContextObserveOptions = CreateObserveModuleOptions & Pick<ObserveOptions, 'ws'>;

/**
 * Options for `createObserveModule()` from `@nestjs/observe` that make Observe's trace id and the
 * correlation id one value on every entry, and leave the library's own classes out of its
 * instrumentation. Pass your own Observe options through it (its `ws` options too); everything else
 * in them is kept as it is.
 *
 * - `traceIdGenerator`: the correlation id of the request's context. On HTTP the context opens
 *   before Observe's request hook (the library's entry wraps the server's request handling), so
 *   the id is the one the app chose under its own `validate` and trust policy, and Observe's trace
 *   id, `TracerService.currentTraceId()`, its `x-request-id` on outgoing fetch/undici/http calls,
 *   microservice metadata and BullMQ jobs, and its log suffix all carry it. Where Observe names a
 *   message (or a WebSocket upgrade) before the context opens, the id is the inbound one the app
 *   will accept — its id headers, `validate` and trust policy, read from the transport's metadata —
 *   when one app with `ContextModule` runs in the process (else the library's default rule), or a
 *   fresh id that the context then adopts. Your own `traceIdGenerator`, if you pass one, is used
 *   there instead.
 * - Entries Observe names without asking (BullMQ jobs, `@nestjs/schedule` runs, gateway messages):
 *   the context opened inside one of its operations adopts its id when it accepted no inbound id;
 *   the BullMQ integration writes the correlation id into Observe's job option too. `ws.setAttributes`
 *   (yours is called as well) lets `ContextWsModule` run a gateway message's pipeline inside
 *   Observe's operation.
 * - `skipInstrumentation`: true for the library's providers, modules, explorers and `ContextLogger`
 *   (so it adds no spans, billed or not), or whatever your own `skipInstrumentation` skips.
 *
 * Never throws: a `traceIdGenerator` of yours that throws or returns a non-string gets a fresh
 * UUIDv7 instead.
 *
 * @example
 * // observe.ts (createObserveModule of @nestjs/observe)
 * export const { ObserveModule, ObserveInstrument } = createObserveModule(contextObserveOptions());
 */
export function contextObserveOptions(options: ContextObserveOptions = {}): CreateObserveModuleOptions {
  const own = options.traceIdGenerator;
  const ownSkip = options.skipInstrumentation;
  const ownWs = options.ws;
  let readerAdded = false;
  registerOnce();
  const ws: NonNullable<ObserveOptions['ws']> = {
    ...ownWs,
    // Called inside the operation Observe opens for a gateway message, before Nest's pipeline.
    setAttributes: (message: WsMessageContext) => {
      offerOperationScope();
      return ownWs?.setAttributes?.(message) ?? {};
    },
  };
  return {
    ...options,
    // Not an option of createObserveModule() in Observe's types, but kept with the others: forRoot()
    // spreads its own options over these (so a `ws` given there replaces this one; see the docs).
    ...({ ws } as object),
    traceIdGenerator: (source: unknown): string => sharedTraceId(source, own),
    skipInstrumentation: (instance: unknown): boolean => {
      // Observe asks about every provider, its own `TracerService` included: its `currentTraceId()`
      // reads the AsyncLocalStorage of this `createObserveModule()` call, shared by all its apps.
      if (!readerAdded && isTracerService(instance)) {
        readerAdded = true;
        // Held weakly: a closed app's TracerService (and all it references) can still be collected;
        // the reader then answers nothing and is dropped.
        const tracer = new WeakRef(instance);
        addTraceIdReader(() => {
          const live = tracer.deref();
          return live === undefined ? STALE : live.currentTraceId();
        });
      }
      return isInternal(instance) || (ownSkip !== undefined && Boolean(ownSkip(instance)));
    },
  };
}

let registered = false;

/**
 * Registers, once per process and build, what the rest of the library asks of Observe: the id a
 * context opened inside one of Observe's own operations adopts, and the job option in which both
 * carry the id on BullMQ jobs.
 */
function registerOnce(): void {
  if (registered) return;
  registered = true;
  addIdAdopter(adoptable);
  addJobIdOption({ name: JOB_TRACE_OPTION, accepts: (id) => OBSERVE_ID.test(id) });
}

/**
 * The id a new context of `source` that accepted no inbound id adopts: the id of the operation
 * Observe opened around it (`currentTraceId()`), on the entries where Observe names the operation
 * itself. Not a job's stamped id that Observe inherited (`anchor` is the job): that is inbound
 * metadata, which the BullMQ integration reads under the app's trust policy like its own.
 */
function adoptable(source: ContextSource, anchor: object | undefined): string | undefined {
  if (!MINTING_ENTRIES.has(source)) return undefined;
  const id = instrumentationTraceId();
  if (id === undefined || (source === 'bullmq' && id === stampOf(anchor))) return undefined;
  return id;
}

/** The id Observe stamped on a job (`job.opts.observeTraceId`), if `job` is one that has it. */
function stampOf(job: object | undefined): unknown {
  try {
    const opts = (job as { opts?: unknown } | undefined)?.opts;
    return opts !== null && typeof opts === 'object' ? (opts as Record<string, unknown>)[JOB_TRACE_OPTION] : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `instance` is `@nestjs/observe`'s `TracerService` (by its public shape; the package is an optional peer). */
function isTracerService(instance: unknown): instance is { currentTraceId(): string | null } {
  try {
    return (
      instance !== null &&
      typeof instance === 'object' &&
      (instance as object).constructor?.name === 'TracerService' &&
      typeof (instance as { currentTraceId?: unknown }).currentTraceId === 'function'
    );
  } catch {
    return false; // a provider whose inspection throws (a proxy outside its own context) is not it
  }
}

/**
 * The trace id Observe should use for `source` (an HTTP request, a microservice's per-message
 * context, a gRPC call): the correlation id of the context already opened for it; else, where Observe
 * asks first (messages, WebSocket upgrades, HTTP with `enterEarly: false`), the inbound id the app
 * will accept for it — under its own id headers, `validate` and trust policy when one app with
 * `ContextModule` runs in the process, else the library's default rule — or, without one, a fresh id
 * (the app's generator's) left on `source` for the context to adopt (see `MINTED_ID_KEY`). Your own
 * `own` generator, if given, is asked instead of all but the first step.
 */
function sharedTraceId(source: unknown, own: ((source: unknown) => string) | undefined): string {
  const record = recordOfRequest(source);
  if (record !== undefined) return record.correlationId;
  if (own !== undefined) return ownTraceId(source, own);
  const apps = liveApps();
  const host = apps.length === 1 && !(apps[0] as ContextHost).closed ? apps[0] : undefined;
  const accepted = host === undefined ? inboundIds(source).find((candidate) => isValidCorrelationId(candidate)) : acceptedBy(host, source);
  if (accepted !== undefined) return accepted;
  const minted = host === undefined ? uuidV7() : isHttpRequest(source) ? host.generate('http', nodeRequest(source)) : host.generate('rpc');
  leaveMintedId(source, minted);
  return minted;
}

/** The id your own `traceIdGenerator` gives (a fresh UUIDv7 when it throws or returns no string), left to adopt unless it is an inbound value. */
function ownTraceId(source: unknown, own: (source: unknown) => string): string {
  let id: unknown;
  try {
    id = own(source);
  } catch {
    id = undefined; // a user callback must not take the request down: a fresh id instead
  }
  if (typeof id !== 'string' || id === '') id = uuidV7();
  const chosen = id as string;
  if (!inboundIds(source).includes(chosen)) leaveMintedId(source, chosen);
  return chosen;
}

/** The inbound id `host`'s entry will accept for `source`: from an HTTP request's headers, or from a message's metadata as the app's transport integration reads it. */
function acceptedBy(host: ContextHost, source: unknown): string | undefined {
  try {
    if (isHttpRequest(source)) {
      const request = nodeRequest(source);
      return host.acceptedId(request.headers as Carrier, request);
    }
    // A gRPC call: its handlers get the call's metadata as their transport argument.
    const transport = grpcMetadataOf(source) ?? source;
    return host.acceptedId(host.messageCarrier('rpc', undefined, transport));
  } catch {
    return undefined; // a request or context whose properties cannot be read carries no usable id
  }
}

/** Node's request of an HTTP request (Fastify's wrapper has it as `raw`). */
function nodeRequest(source: unknown): IncomingMessage {
  let raw: unknown;
  try {
    raw = (source as { raw?: unknown }).raw;
  } catch {
    raw = undefined; // a wrapper whose `raw` cannot be read: the object itself
  }
  return (isHttpRequest(raw) ? raw : source) as IncomingMessage;
}

/** Whether `value` looks like an HTTP request (Node's, or Fastify's wrapper): an object with a headers object. */
function isHttpRequest(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  try {
    const headers = (value as { headers?: unknown }).headers;
    return headers !== null && typeof headers === 'object';
  } catch {
    return false;
  }
}

/** The `metadata` of a gRPC call object (grpc-js `Metadata`: `get` and `getMap`), if `source` is one. */
function grpcMetadataOf(source: unknown): object | undefined {
  if (source === null || typeof source !== 'object') return undefined;
  try {
    const metadata = (source as { metadata?: unknown }).metadata;
    if (metadata === null || typeof metadata !== 'object') return undefined;
    const { get, getMap } = metadata as { get?: unknown; getMap?: unknown };
    return typeof get === 'function' && typeof getMap === 'function' ? metadata : undefined;
  } catch {
    return undefined;
  }
}

/** The string values of the default id headers on an HTTP request or in a message's metadata, in order. */
function inboundIds(source: unknown): string[] {
  const out: string[] = [];
  if (source === null || typeof source !== 'object') return out;
  try {
    const headers = (source as { headers?: unknown }).headers;
    const holder = headers !== null && typeof headers === 'object' ? headers : metadataOf(source);
    if (holder === undefined) return out;
    for (const name of INBOUND_HEADERS) {
      const value = (holder as Record<string, unknown>)[name];
      if (typeof value === 'string') out.push(value);
    }
  } catch {
    // A request or context whose properties cannot be read carries no usable id.
  }
  return out;
}

/** `getMetadata()` of a microservice context (NestJS 12 TCP/Redis packet metadata), when it returns an object. */
function metadataOf(source: object): object | undefined {
  const getMetadata = (source as { getMetadata?: unknown }).getMetadata;
  if (typeof getMetadata !== 'function') return undefined;
  const metadata: unknown = getMetadata.call(source);
  return metadata !== null && typeof metadata === 'object' ? metadata : undefined;
}

/**
 * Leaves `id` for the context to adopt where its entry looks: on the request (Node's own under
 * Fastify's wrapper), on a message's context, and on a gRPC call's metadata (its handlers' transport
 * argument).
 */
function leaveMintedId(source: unknown, id: string): void {
  if (source === null || typeof source !== 'object') return;
  try {
    const raw = (source as { raw?: unknown }).raw;
    const target = raw !== null && typeof raw === 'object' && 'headers' in raw ? raw : source;
    (target as { [MINTED_ID_KEY]?: string })[MINTED_ID_KEY] = id;
    const metadata = grpcMetadataOf(source);
    if (metadata !== undefined) (metadata as { [MINTED_ID_KEY]?: string })[MINTED_ID_KEY] = id;
  } catch {
    // A frozen or proxied object cannot hold it: the context then generates its own id.
  }
}
