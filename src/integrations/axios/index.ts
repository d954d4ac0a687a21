/**
 * `nestjs-context/axios`: every request of an axios instance carries the current context's headers.
 * For axios 1.x instances (typed structurally; this entry point does not import axios).
 *
 * @module nestjs-context/axios
 */
import { injectActive, type OutboundOptions } from '../../access/current-context.js';
import { headerMapSetter } from '../../propagation/carrier.js';

/** The part of an axios request config this integration touches (axios 1.x). */
export interface AxiosLikeRequestConfig {
  /** The request headers: an `AxiosHeaders` instance or a plain object; created when missing. */
  headers?: unknown;
}

/** The part of an axios instance this integration touches: its request interceptors. */
export interface AxiosLikeInstance {
  /** The instance's interceptors; only the request ones are used. */
  interceptors: {
    /** The request interceptors. */
    request: {
      /** Registers a request interceptor; it returns the config it was given (typed as the client's own). */
      use(onFulfilled: (config: AxiosLikeRequestConfig) => never): number;
      /** Removes the request interceptor registered under `id`. */
      eject(id: number): void;
    };
  };
}

/**
 * Adds the current context's headers (`traceparent`, `tracestate`, `baggage`, correlation id) to
 * a request's headers; headers the caller set explicitly are kept. Works with axios' `AxiosHeaders`
 * and with plain header objects. @internal
 */
function injectHeaders<C extends AxiosLikeRequestConfig>(config: C, options?: OutboundOptions): C {
  if (config.headers === undefined || config.headers === null) config.headers = {};
  injectActive(config.headers, headerMapSetter, options, 'http');
  return config;
}

/**
 * Makes every request of an axios instance carry the current context — zero per-call code.
 * Returns the same instance, with `ejectContext()` to remove the interceptor again.
 *
 * @example
 * const client = propagateContext(axios.create({ baseURL: 'http://billing' }));
 */
export function propagateContext<I extends AxiosLikeInstance>(instance: I, options?: OutboundOptions): I & {
  /** Removes the interceptor `propagateContext` added; the instance's requests carry no context headers any more. */
  ejectContext(): void;
} {
  // The interceptor hands back the very config object axios gave it, so its type is axios' own.
  const interceptor = (config: AxiosLikeRequestConfig) => injectHeaders(config, options) as never;
  const id = instance.interceptors.request.use(interceptor);
  return Object.assign(instance, { ejectContext: () => instance.interceptors.request.eject(id) });
}
