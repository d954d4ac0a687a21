import { ContextError } from '../errors.js';
import type { ContextHost } from './context-host.js';
import type { ResolvedContextOptions } from './options.js';
import { storage, type ContextRecord } from '../record/context-record.js';

/**
 * Which app code outside dependency injection belongs to. Every app with a `ContextModule` has one
 * {@link ContextHost} (its runtime). Nothing here guesses "the latest app":
 *
 * 1. an object the app built (a provider or controller) is bound to it while the app lives — during
 *    the app's bootstrap too (a provider calling such code from its own `onModuleInit`);
 * 2. inside a context, the app whose record is active;
 * 3. outside any context, the only app alive in the process;
 * 4. otherwise a {@link ContextError} that says which app-bound call to use instead.
 *
 * Apps count as alive from the end of their bootstrap (`onApplicationBootstrap`) until `app.close()`,
 * so a module that was only compiled, or whose bootstrap failed, is never one of them.
 * @internal
 */

const APPS_KEY = Symbol.for('nestjs-context:apps');
const HOSTS_BY_OPTIONS_KEY = Symbol.for('nestjs-context:hosts-by-options');
const INSTANCE_BINDINGS_KEY = Symbol.for('nestjs-context:instance-bindings');
const BOOTSTRAPPING_KEY = Symbol.for('nestjs-context:bootstrapping');

interface Shared {
  [APPS_KEY]?: Set<ContextHost>;
  [HOSTS_BY_OPTIONS_KEY]?: WeakMap<object, ContextHost>;
  [INSTANCE_BINDINGS_KEY]?: WeakMap<object, ContextHost[]>;
  [BOOTSTRAPPING_KEY]?: Set<WeakRef<Claimer>>;
}

// Shared by the ESM and CommonJS builds (and by copies of the package) through registered symbols.
const shared = globalThis as Shared;
const apps: Set<ContextHost> = (shared[APPS_KEY] ??= new Set());
const hostsByOptions: WeakMap<object, ContextHost> = (shared[HOSTS_BY_OPTIONS_KEY] ??= new WeakMap());
/** Objects an app built → the apps that built them (an object shared by two apps: the latest one alive). */
const instanceBindings: WeakMap<object, ContextHost[]> = (shared[INSTANCE_BINDINGS_KEY] ??= new WeakMap());

/** An app still in its bootstrap, which can prove that it built an object (see {@link resolveHost}). @internal */
export interface Claimer {
  /** The app's host if this app built `instance` (binding it and its siblings now), else `undefined`. */
  claim(instance: object): ContextHost | undefined;
}

/**
 * Apps between construction and the end of their bootstrap, held weakly: a module that was only
 * compiled is never counted, never kept alive, and only ever answers for objects it built.
 */
const bootstrapping: Set<WeakRef<Claimer>> = (shared[BOOTSTRAPPING_KEY] ??= new Set());

/** Tracks an app during its bootstrap; returns the function that stops tracking it. @internal */
export function trackBootstrapping(claimer: Claimer): () => void {
  const ref = new WeakRef(claimer);
  bootstrapping.add(ref);
  return () => {
    bootstrapping.delete(ref);
  };
}

/** The app, still bootstrapping, that built `instance`, if one did (it proves it; nothing is guessed). */
function claimedDuringBootstrap(instance: unknown): ContextHost | undefined {
  if (instance === null || typeof instance !== 'object' || bootstrapping.size === 0) return undefined;
  for (const ref of bootstrapping) {
    const claimer = ref.deref();
    if (claimer === undefined) {
      bootstrapping.delete(ref);
      continue;
    }
    const host = claimer.claim(instance);
    if (host !== undefined) return host;
  }
  return undefined;
}

/** Links an app's resolved options to its host, so a record leads back to its app. @internal */
export function linkOptions(options: ResolvedContextOptions<object>, host: ContextHost): void {
  hostsByOptions.set(options, host);
}

/** The app (host) that made `record`. @internal */
export function hostOfRecord(record: ContextRecord): ContextHost | undefined {
  return hostsByOptions.get(record.config);
}

/** Counts `host` as alive (called at the end of its app's bootstrap); returns the function that forgets it. @internal */
export function registerApp(host: ContextHost): () => void {
  apps.add(host);
  return () => {
    apps.delete(host);
  };
}

/** The apps alive in this process. @internal */
export function liveApps(): readonly ContextHost[] {
  return [...apps];
}

/** Binds an object the app built to the app, until {@link unbindInstance}. @internal */
export function bindInstance(instance: object, host: ContextHost): void {
  const stack = instanceBindings.get(instance);
  if (stack === undefined) instanceBindings.set(instance, [host]);
  else if (!stack.includes(host)) stack.push(host);
}

/**
 * Removes the binding of `instance` to the closed app `host`; another app that built it stays bound.
 * The last binding is kept (it lives only as long as the object itself), so that a call on an object
 * of a closed app can say so. @internal
 */
export function unbindInstance(instance: object, host: ContextHost): void {
  const stack = instanceBindings.get(instance);
  if (stack === undefined || stack.length === 1) return;
  const at = stack.indexOf(host);
  if (at >= 0) stack.splice(at, 1);
}

/** The app `instance` is bound to, if any: the latest one still running, else the closed one. @internal */
export function hostOfInstance(instance: unknown): ContextHost | undefined {
  if (instance === null || typeof instance !== 'object') return undefined;
  const stack = instanceBindings.get(instance);
  if (stack === undefined) return undefined;
  for (let i = stack.length - 1; i >= 0; i--) if (!(stack[i] as ContextHost).closed) return stack[i];
  return stack[stack.length - 1];
}

/**
 * The app that code outside dependency injection belongs to, by the rule above, or a
 * {@link ContextError} naming `caller` and the fix. `instance` is the object the code runs on, if any.
 * @internal
 */
export function resolveHost(caller: string, instance?: unknown): ContextHost {
  const bound = hostOfInstance(instance) ?? claimedDuringBootstrap(instance);
  if (bound !== undefined) {
    if (bound.closed) {
      throw new ContextError(
        `${caller}: the app this object belongs to was closed, so there is no context class or options to open a context with. ` +
          `Call it while its app is running, or from an object of a running app.`,
      );
    }
    return bound;
  }
  const record = storage.getStore();
  if (record !== undefined) {
    const host = hostOfRecord(record);
    if (host !== undefined && !host.closed) return host;
  }
  if (apps.size === 1) for (const host of apps) return host;
  throw new ContextError(
    apps.size === 0
      ? `${caller}: no app with ContextModule is running in this process, so there is no context class or options ` +
          `to open a context with. Import ContextModule.forRoot(MyContext) in your root module and call this after ` +
          `app.init() (NestFactory.create() or createApplicationContext() do it), or open the context yourself with ` +
          `contextService.run(() => ...).`
      : `${caller}: ${apps.size} apps with ContextModule are running in this process and this code is not bound to one ` +
          `(it runs outside any context, on an object no app built). Make the class a provider of its app (its ` +
          `instances are then bound to that app), or open the context through the app you mean: ` +
          `app.get(ContextService).run(() => ...).`,
  );
}

/**
 * Checks that an integration module found the app's `ContextHost` (injected optionally), or throws
 * a {@link ContextError} that says how to fix the imports. @internal
 */
export function hostOrThrow(host: ContextHost | undefined | null, integration: string): ContextHost {
  if (host === undefined || host === null) {
    throw new ContextError(
      `${integration}: no ContextModule found. Import ContextModule.forRoot(MyContext) in the root module ` +
        `(it is global by default; with isGlobal: false, import it in the module that imports ${integration} too).`,
    );
  }
  return host;
}
