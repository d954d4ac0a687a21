import { AsyncResource } from 'node:async_hooks';

/**
 * `callback`, called back in the async context of the caller of this function (every
 * AsyncLocalStorage of it, not just this library's). Does what `AsyncResource.bind(callback)`
 * does at a fraction of its cost: `AsyncResource.bind` defines properties on the bound function,
 * several µs per call on Node 24, and the pools call it once per statement (`pool.query()` goes
 * through `pool.connect(callback)` / `getConnection(callback)`). `this` is not passed on. @internal
 */
export function bindToCaller<A extends unknown[], R>(callback: (...args: A) => R): (...args: A) => R {
  const resource = new AsyncResource('nestjs-context:sql');
  return (...args: A) => resource.runInAsyncScope(callback, undefined, ...args);
}
