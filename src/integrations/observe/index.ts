/**
 * `nestjs-context/observe`: one id per request with `@nestjs/observe` — the correlation id and
 * Observe's trace id are the same value — and none of the library's own classes traced as the
 * application's code. Optional peer dependency: `@nestjs/observe`.
 *
 * @module nestjs-context/observe
 */
import type { CreateObserveModuleOptions } from '@nestjs/observe';
import { MINTED_ID_KEY } from '../../constants.js';
import { isValidCorrelationId } from '../../propagation/correlation-id.js';
import { uuidV7 } from '../../propagation/ids.js';
import { recordOfRequest } from '../../record/context-record.js';
import { STALE, addTraceIdReader, isInternal } from '../../runtime/internal.js';

/** The headers read for an inbound id where no context of ours exists yet: the library's defaults. */
const INBOUND_HEADERS = ['x-request-id', 'x-correlation-id'] as const;

/**
 * Options for `createObserveModule()` from `@nestjs/observe` that make Observe use the request's
 * correlation id as its trace id, and leave the library's own classes out of its instrumentation.
 * Pass your own Observe options through it; everything else in them is kept as it is.
 *
 * - `traceIdGenerator`: the correlation id of the request's context. On HTTP the context opens
 *   before Observe's request hook (the library's entry wraps the server's request handling), so
 *   the id is the one the app chose under its own `validate` and trust policy, and Observe's trace
 *   id, `TracerService.currentTraceId()`, its `x-request-id` on outgoing fetch/undici/http calls,
 *   microservice metadata and BullMQ jobs, and its log suffix all carry it. Where Observe reads a
 *   message before the context opens (microservice transports: its processing hook runs before the
 *   handler), the id comes from `x-request-id` / `x-correlation-id` in the message's metadata when
 *   valid (the library's default rule), else a fresh UUIDv7 that the context then adopts. Your own
 *   `traceIdGenerator`, if you pass one, is used there instead.
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
export function contextObserveOptions(options: CreateObserveModuleOptions = {}): CreateObserveModuleOptions {
  const own = options.traceIdGenerator;
  const ownSkip = options.skipInstrumentation;
  let readerAdded = false;
  return {
    ...options,
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
 * The trace id Observe should use for `source` (an HTTP request, or a microservice's per-message
 * context): the correlation id of the context already opened for it; else the id from `own` (or
 * the library's default rule), left on `source` for the context to adopt when it is not an inbound
 * value (see `MINTED_ID_KEY`).
 */
function sharedTraceId(source: unknown, own: ((source: unknown) => string) | undefined): string {
  const record = recordOfRequest(source);
  if (record !== undefined) return record.correlationId;
  const inbound = inboundIds(source);
  let id: unknown;
  if (own !== undefined) {
    try {
      id = own(source);
    } catch {
      id = undefined; // a user callback must not take the request down: a fresh id instead
    }
  } else {
    id = inbound.find((candidate) => isValidCorrelationId(candidate));
  }
  if (typeof id !== 'string' || id === '') id = uuidV7();
  const chosen = id as string;
  if (!inbound.includes(chosen)) leaveMintedId(source, chosen);
  return chosen;
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

/** Leaves `id` on the request (Node's own under Fastify's wrapper) or message context for the context to adopt. */
function leaveMintedId(source: unknown, id: string): void {
  if (source === null || typeof source !== 'object') return;
  try {
    const raw = (source as { raw?: unknown }).raw;
    const target = raw !== null && typeof raw === 'object' && 'headers' in raw ? raw : source;
    (target as { [MINTED_ID_KEY]?: string })[MINTED_ID_KEY] = id;
  } catch {
    // A frozen or proxied object cannot hold it: the context then generates its own id.
  }
}
