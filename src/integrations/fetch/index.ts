/**
 * `nestjs-context/fetch`: `fetch` calls carry the current context's headers. No extra dependency.
 *
 * @module nestjs-context/fetch
 */
import { injectActive, type OutboundOptions } from '../../access/current-context.js';
import { headerMapSetter } from '../../propagation/carrier.js';
import { storage } from '../../record/context-record.js';

type Fetch = typeof globalThis.fetch;
const INSTALLED = Symbol.for('nestjs-context:fetch-install');

/** The process-wide installation of {@link propagateGlobalFetch}, shared by every copy of this package. */
interface Installation {
  /** Our wrapper, put on `globalThis.fetch`. */
  wrapper: Fetch;
  /** What `globalThis.fetch` was before: put back on the last uninstall if ours is still there. */
  wrapped: Fetch;
  /** Live installs (one per app that installed). */
  count: number;
}

/**
 * Wraps a `fetch` function so every call carries the current context's headers (`traceparent`,
 * `tracestate`, `baggage`, correlation id); headers the caller set are kept.
 *
 * @example
 * const fetch = propagateContext(globalThis.fetch);
 * await fetch('http://billing/invoices');
 */
export function propagateContext(fetchImpl: Fetch, options?: OutboundOptions): Fetch {
  return function contextFetch(input, init) {
    try {
      if (storage.getStore() === undefined && options?.newTraceOutsideContext !== true) return fetchImpl(input, init);
      const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
      injectActive(headers, headerMapSetter, options, 'http');
      return fetchImpl(input, { ...init, headers });
    } catch (error) {
      // Like the native fetch: invalid arguments (e.g. a malformed header) reject, never throw.
      return Promise.reject(error as Error);
    }
  };
}

/**
 * Replaces the global `fetch` (undici) with one that carries the current context, so every
 * `fetch()` in the process propagates with zero per-call code. Reference-counted: while an install
 * is live, later installs only count (the first install's `options` apply), so wrappers another
 * library put over ours (instrumentation) are kept. Returns a function that undoes this install;
 * the last one puts the previous `fetch` back, unless something else has replaced ours meanwhile,
 * in which case `globalThis.fetch` is left as it is.
 *
 * @throws Error when the runtime has no global `fetch`.
 */
export function propagateGlobalFetch(options?: OutboundOptions): () => void {
  const holder = globalThis as typeof globalThis & { [INSTALLED]?: Installation };
  let installation = holder[INSTALLED];
  if (installation === undefined) {
    const current = globalThis.fetch;
    if (typeof current !== 'function') {
      throw new Error('nestjs-context/fetch: this runtime has no global fetch to wrap. Use Node.js 20 or later, or wrap your client with propagateContext(fetchImpl).');
    }
    installation = { wrapper: propagateContext(current, options), wrapped: current, count: 0 };
    holder[INSTALLED] = installation;
    globalThis.fetch = installation.wrapper;
  }
  const own = installation;
  own.count++;
  let undone = false;
  return () => {
    if (undone) return;
    undone = true;
    own.count--;
    if (own.count > 0 || holder[INSTALLED] !== own) return;
    delete holder[INSTALLED];
    if (globalThis.fetch === own.wrapper) globalThis.fetch = own.wrapped;
  };
}
