import type { Type } from '@nestjs/common';
import { ContextError, ContextNotActiveError } from '../errors.js';
import { storage, type ContextRecord } from '../record/context-record.js';
import type { ContextHost } from '../runtime/context-host.js';

/**
 * The error for a context of another app in this process found where one of `mine` was expected
 * (a service of one app called inside a request of another). `caller` names the call, `owner` the
 * object that belongs to one app, and `fix` says how to read the right context there. @internal
 */
export function otherAppError(caller: string, owner: string, found: Type<object>, mine: Type<object>, fix: string): ContextError {
  return new ContextError(
    `${caller}: the active context is a ${found.name || 'anonymous class'} made by another app in this process, ` +
      `and ${owner} belongs to the app whose context class is ${mine.name || 'anonymous class'}. A service of one app ` +
      `was called inside a request of another: ${fix}`,
  );
}

/**
 * Names Nest and other libraries read on every provider at bootstrap, outside any context, to find
 * hooks or to await a factory's result. Outside a context the proxy answers them as "absent" instead
 * of throwing; inside one they are read on the context like any other name.
 */
const PROBED = new Set<PropertyKey>([
  'then',
  'onModuleInit',
  'onApplicationBootstrap',
  'onModuleDestroy',
  'beforeApplicationShutdown',
  'onApplicationShutdown',
]);

/**
 * The user's class injected as a singleton (`injection: 'proxy'`): one object per app whose every
 * property read, write, `in`, `delete`, key listing and method call goes to the context of the
 * current request, message or job of that app. Methods come bound to the real context object.
 *
 * Its prototype is the class's, so `instanceof MyContext` holds and frameworks that scan a
 * provider's prototype at bootstrap (schedules, event listeners, explorers) see the class's methods.
 * Outside a context of its app it throws {@link ContextNotActiveError} (or the "another app" error),
 * except that names found on the class's prototype (methods, accessors) and the names frameworks
 * probe at bootstrap ({@link PROBED}, symbols) can be read there; calling such a method outside a
 * context throws as soon as it touches the context's fields. @internal
 */
export function createContextProxy<T extends object>(host: ContextHost<T>): T {
  const contextClass = host.contextClass as Type<object>;
  const name = contextClass.name || 'context class';
  const caller = `the injected ${name}`;
  const config: object = host.options;
  const prototype = contextClass.prototype as object;

  // The hot path: the active record is this app's (an inner app's record sits above the outer app's
  // on a request through a mounted app, so the chain is walked only when the first one is not ours).
  const own = (): ContextRecord | undefined => {
    let record = storage.getStore();
    if (record === undefined || record.config === config) return record;
    while (record !== undefined && record.config !== config) record = record.outer;
    return record;
  };
  const missing = (): ContextError => {
    const active = storage.getStore();
    if (active === undefined) return ContextNotActiveError.create(caller);
    return otherAppError(
      caller,
      `this injected ${name}`,
      active.config.contextClass,
      contextClass,
      `inject the ${name} (or the ContextService) of the app that handles the request, or open a context of this app with contextService.run(() => ...).`,
    );
  };
  const context = (): object => {
    const record = own();
    if (record === undefined) throw missing();
    return record.context as object;
  };

  const target = Object.create(prototype) as object;
  return new Proxy(target, {
    get(_target, key, receiver) {
      const record = own();
      if (record !== undefined) {
        const ctx = record.context as object;
        const value: unknown = Reflect.get(ctx, key, ctx);
        return typeof value === 'function' && key !== 'constructor' ? (value as (...args: unknown[]) => unknown).bind(ctx) : value;
      }
      // Outside a context: what the class itself declares (bootstrap-time scans), else "absent" for
      // probed names, else the actionable error.
      if (key in prototype) return Reflect.get(prototype, key, receiver);
      if (typeof key === 'symbol' || PROBED.has(key)) return undefined;
      throw missing();
    },
    set: (_target, key, value) => Reflect.set(context(), key, value),
    has(_target, key) {
      const record = own();
      if (record !== undefined) return Reflect.has(record.context as object, key);
      if (key in prototype) return true;
      if (typeof key === 'symbol' || PROBED.has(key)) return false;
      throw missing();
    },
    deleteProperty: (_target, key) => Reflect.deleteProperty(context(), key),
    ownKeys: () => Reflect.ownKeys(context()),
    getOwnPropertyDescriptor(_target, key) {
      // Reported configurable: the target holds none of these properties (a proxy invariant).
      const descriptor = Reflect.getOwnPropertyDescriptor(context(), key);
      return descriptor && { ...descriptor, configurable: true };
    },
    defineProperty: (_target, key, descriptor) => Reflect.defineProperty(context(), key, descriptor),
    // The prototype stays the class's (no getPrototypeOf trap): `instanceof` works in and outside a
    // context. Changing it, or freezing the proxy, would break that and the invariants above.
    setPrototypeOf: () => false,
    preventExtensions: () => false,
  }) as T;
}
