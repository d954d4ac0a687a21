import { getOutboundHeaders, type OutboundOptions } from '../../current-context.js';

type Fetch = typeof globalThis.fetch;
const INSTALLED = Symbol.for('nestjs-context:fetch-original');

/**
 * Wraps a `fetch` function so every call carries the current context's headers (`traceparent`,
 * `tracestate`, `baggage`, correlation id); headers the caller set are kept.
 *
 * @example
 * const fetch = withContext(globalThis.fetch);
 * await fetch('http://billing/invoices');
 */
export function withContext(fetchImpl: Fetch, options?: OutboundOptions): Fetch {
  return function contextFetch(input, init) {
    const outbound = getOutboundHeaders(options);
    const names = Object.keys(outbound);
    if (names.length === 0) return fetchImpl(input, init);
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    for (const name of names) if (!headers.has(name)) headers.set(name, outbound[name] as string);
    return fetchImpl(input, { ...init, headers });
  };
}

/**
 * Replaces the global `fetch` (undici) with one that carries the current context, so every
 * `fetch()` in the process propagates with zero per-call code. Idempotent. Returns a function that
 * puts the original back.
 */
export function installFetchPropagation(options?: OutboundOptions): () => void {
  const holder = globalThis as typeof globalThis & { [INSTALLED]?: Fetch };
  const original = holder[INSTALLED] ?? globalThis.fetch;
  if (typeof original !== 'function') {
    throw new Error('nestjs-context/fetch: this runtime has no global fetch to wrap. Use Node.js 20 or later, or wrap your client with withContext().');
  }
  holder[INSTALLED] = original;
  globalThis.fetch = withContext(original, options);
  return () => {
    if (holder[INSTALLED] === original) {
      globalThis.fetch = original;
      delete holder[INSTALLED];
    }
  };
}
