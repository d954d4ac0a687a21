import { getOutboundHeaders, type OutboundOptions } from '../../access/current-context.js';

/** The part of an axios request config this integration touches (axios 1.x). */
export interface AxiosLikeRequestConfig {
  headers?: unknown;
}

/** The part of an axios instance this integration touches: its request interceptors. */
export interface AxiosLikeInstance {
  interceptors: {
    request: {
      /** Registers a request interceptor; it returns the config it was given (typed as the client's own). */
      use(onFulfilled: (config: AxiosLikeRequestConfig) => never): number;
      eject(id: number): void;
    };
  };
}

interface HeaderBag {
  has?(name: string): boolean;
  set?(name: string, value: string): unknown;
  [name: string]: unknown;
}

/**
 * Adds the current context's headers (`traceparent`, `tracestate`, `baggage`, correlation id) to
 * a request's headers; headers the caller set explicitly are kept. Works with axios' `AxiosHeaders`
 * and with plain header objects. @internal
 */
/** Adds the outbound headers of the active context to an axios request config (keeps headers already set). @internal */
function injectHeaders<C extends AxiosLikeRequestConfig>(config: C, options?: OutboundOptions): C {
  const outbound = getOutboundHeaders(options);
  let bag = config.headers as HeaderBag | undefined;
  if (bag === undefined || bag === null) config.headers = bag = {};
  for (const name in outbound) {
    const value = outbound[name] as string;
    if (typeof bag.has === 'function' && typeof bag.set === 'function') {
      if (!bag.has(name)) bag.set(name, value);
    } else if (!Object.keys(bag).some((key) => key.toLowerCase() === name)) {
      bag[name] = value;
    }
  }
  return config;
}

/**
 * Makes every request of an axios instance carry the current context — zero per-call code.
 * Returns a function that removes the interceptor again.
 *
 * @example
 * const client = propagateContext(axios.create({ baseURL: 'http://billing' }));
 */
export function propagateContext<I extends AxiosLikeInstance>(instance: I, options?: OutboundOptions): I & { ejectContext(): void } {
  // The interceptor hands back the very config object axios gave it, so its type is axios' own.
  const interceptor = (config: AxiosLikeRequestConfig) => injectHeaders(config, options) as never;
  const id = instance.interceptors.request.use(interceptor);
  return Object.assign(instance, { ejectContext: () => instance.interceptors.request.eject(id) });
}
