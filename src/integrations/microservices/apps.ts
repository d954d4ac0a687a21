import type { ContextHost } from '../../runtime/context-host.js';

/**
 * Which app a message handler belongs to, decided once, when Nest registers it.
 *
 * Every app that imports `ContextMicroservicesModule` leaves its `ContextHost` on its own Nest
 * `ModulesContainer` (one per app; a hybrid app's connected microservices share it) until it closes.
 * Nest registers the handlers of each controller through
 * `ListenersController#registerPatternHandlers(wrapper, server, moduleKey)`, which calls
 * `server.addHandler()` synchronously: the patched method works out the controller's app from its
 * own container and the controller's module (see {@link appOfController}) and holds it in
 * {@link registering} for exactly that call, so the `addHandler` wrapper binds each handler to its
 * app. Nothing here looks at which apps happen to be running.
 * @internal
 */

/** The property of an app's `ModulesContainer` that holds the app's host while it uses the integration. */
const APP_HOST = Symbol.for('nestjs-context:microservices-app-host');

type Holder = { [APP_HOST]?: ContextHost };

/**
 * Marks `modules` (the app's Nest `ModulesContainer`) as belonging to `host` until the returned
 * function is called (on the app's close). A second registration of the same container by another
 * host that is still open (two `ContextModule`s in one app) keeps the first. @internal
 */
export function registerAppModules(modules: object, host: ContextHost): () => void {
  const holder = modules as Holder;
  const current = holder[APP_HOST];
  if (current !== undefined && current !== host && !current.closed) return () => undefined;
  Object.defineProperty(modules, APP_HOST, { value: host, configurable: true, writable: true, enumerable: false });
  return () => {
    if (holder[APP_HOST] === host) delete holder[APP_HOST];
  };
}

/** What the patched `registerPatternHandlers` is registering right now (shared by every build of the package). */
interface Registering {
  host: ContextHost | undefined;
}

const REGISTERING_KEY = Symbol.for('nestjs-context:microservices-registering');

/**
 * The app whose handlers Nest is registering at this moment (synchronously, inside
 * `registerPatternHandlers`), else `undefined`. On `globalThis` under a registered symbol, so the
 * `addHandler` patch of one build of the package reads what the other build's patch set. @internal
 */
export const registering: Registering = ((globalThis as { [REGISTERING_KEY]?: Registering })[REGISTERING_KEY] ??= { host: undefined });

type ContainerLike = { getModules?: () => unknown };

/**
 * The app (host) of the controller `wrapper` (Nest's `InstanceWrapper`, whose `host` is the Nest
 * `Module` that declares it) registered by `listeners` (Nest's `ListenersController`, built per app
 * with that app's container) under `moduleKey`: the host registered on the app's `ModulesContainer`,
 * checked to hold that very module under that key. `undefined` for an app that did not import
 * `ContextMicroservicesModule` or has closed, and whenever Nest's objects do not have the expected
 * shape. Never throws. @internal
 */
export function appOfController(listeners: unknown, wrapper: unknown, moduleKey: unknown): ContextHost | undefined {
  try {
    const module = (wrapper as { host?: unknown } | null | undefined)?.host;
    if (module === null || typeof module !== 'object') return undefined;
    // The listeners controller's container, else the one the module itself was created in (the same
    // object on NestJS 11 and 12; two ways in, in case one of these internals is renamed).
    const containers = [(listeners as { container?: unknown } | null | undefined)?.container, (module as { container?: unknown }).container];
    for (const container of containers) {
      if (container === null || typeof container !== 'object') continue;
      const getModules = (container as ContainerLike).getModules;
      if (typeof getModules !== 'function') continue;
      const modules = getModules.call(container);
      if (!(modules instanceof Map) || modules.get(moduleKey) !== module) continue;
      const host = (modules as Holder)[APP_HOST];
      return host !== undefined && !host.closed ? host : undefined;
    }
  } catch {
    // Not Nest's objects as we know them: no app, the handler gets no context from this integration.
  }
  return undefined;
}
