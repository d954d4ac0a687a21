import { Logger, type OnModuleInit } from '@nestjs/common';
import type { DiscoveryService } from '@nestjs/core';
import { hostOfInstance, hostOfRecord } from './apps.js';
import type { ContextHost } from './context-host.js';
import { storage } from '../record/context-record.js';
import { markInternal } from './internal.js';

// ---------------------------------------------------------------------------------------------
// Method helpers that keep decorator metadata (internal, shared with @WithContext()).
// ---------------------------------------------------------------------------------------------

/** A method as the wrappers see it. @internal */
export type AnyMethod = (this: unknown, ...args: unknown[]) => unknown;

interface MetadataReflect {
  getOwnMetadataKeys?(target: object): unknown[];
  getOwnMetadata?(key: unknown, target: object): unknown;
  defineMetadata?(key: unknown, value: unknown, target: object): void;
}

/** Copies the `reflect-metadata` entries and the name of `from` onto `to` (decorators such as `@Cron()` read them). @internal */
export function copyMethodMetadata(from: object, to: object): void {
  const reflect = Reflect as unknown as MetadataReflect;
  if (typeof reflect.getOwnMetadataKeys === 'function' && reflect.getOwnMetadata && reflect.defineMetadata) {
    for (const key of reflect.getOwnMetadataKeys(from)) {
      reflect.defineMetadata(key, reflect.getOwnMetadata(key, from), to);
    }
  }
  const name = (from as { name?: unknown }).name;
  if (typeof name === 'string') Object.defineProperty(to, 'name', { value: name, configurable: true });
}

/**
 * Names of the methods of a prototype and its parents (not `Object.prototype`), without getters.
 * @internal
 */
export function methodNames(proto: object): string[] {
  const names = new Set<string>();
  for (let p: object | null = proto; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (name === 'constructor' || names.has(name)) continue;
      const descriptor = Object.getOwnPropertyDescriptor(p, name);
      if (descriptor !== undefined && typeof descriptor.value === 'function') names.add(name);
    }
  }
  return [...names];
}

/** What every binding of an integration carries: the app (its host) it belongs to. @internal */
export interface AppBinding {
  readonly host: ContextHost;
}

const logger = new Logger('ContextModule');

/** Classes and instances bound by every {@link AppBindings} of this copy of the package (0 once every app closed). */
let boundKeys = 0;

/**
 * Which app (binding) each wrapped class and each of its instances belongs to. Every app that
 * wraps a class or owns an instance pushes its binding on that key's stack and removes it when it
 * closes (a key whose stack empties is dropped, so nothing keeps a closed app reachable through a
 * shared class). Nothing here guesses "the latest app": see {@link of}.
 * @internal
 */
export class AppBindings<B extends AppBinding> {
  private readonly stacks = new WeakMap<object, B[]>();
  /** Classes warned about once for being shared by several apps with no way to tell which one a call belongs to. */
  private readonly warned = new WeakSet<object>();

  /** Binds `key` (a class or an instance) to the app of `binding` too. */
  bind(key: object, binding: B): void {
    const stack = this.stacks.get(key);
    if (stack !== undefined) {
      stack.push(binding);
      return;
    }
    this.stacks.set(key, [binding]);
    boundKeys++;
  }

  /** Removes `binding` (its latest entry) from the stack of `key`; the key is forgotten once its stack is empty. */
  unbind(key: object, binding: B): void {
    const stack = this.stacks.get(key);
    if (stack === undefined) return;
    const index = stack.lastIndexOf(binding);
    if (index !== -1) stack.splice(index, 1);
    if (stack.length > 0) return;
    this.stacks.delete(key);
    boundKeys--;
  }

  /**
   * The binding a call on `instance` uses: among the bindings of the instance itself, else of its
   * class, the one of the app that built the object (`undefined` when that app did not import this
   * integration); for an object no app built, the only binding, else the one of the active
   * record's app. `undefined` when none applies (the wrapper then opens no context).
   */
  of(instance: unknown): B | undefined {
    if (typeof instance !== 'object' || instance === null) return undefined;
    let stack = this.stacks.get(instance);
    if (stack === undefined) {
      const type = (instance as { constructor?: unknown }).constructor;
      stack = typeof type === 'function' ? this.stacks.get(type) : undefined;
      if (stack === undefined) return undefined;
    }
    const owner = hostOfInstance(instance);
    if (owner !== undefined) return stack.find((binding) => binding.host === owner);
    if (stack.length === 1) return stack[0];
    const record = storage.getStore();
    const active = record === undefined ? undefined : hostOfRecord(record);
    const found = active === undefined ? undefined : stack.find((binding) => binding.host === active);
    if (found === undefined) this.warnShared(instance, stack.length);
    return found;
  }

  private warnShared(instance: object, apps: number): void {
    const type = (instance as { constructor?: unknown }).constructor;
    const key = typeof type === 'function' ? type : instance;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    const name = typeof type === 'function' && type.name !== '' ? type.name : 'an object';
    logger.warn(
      `A method of ${name} ran outside any context on an object that ${apps} running apps share (a provider given ` +
        `to each with useValue or useFactory), so it got no context: nothing tells which app the call belongs to. ` +
        `Give each app its own instance (a class provider), or call the method inside a context of the app you mean.`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Installed wrappers: shared by the apps that use them, removed when the last of them closes.
// ---------------------------------------------------------------------------------------------

/** One wrapper of one integration (`tag`) on one prototype method. */
interface Installation {
  readonly proto: object;
  readonly key: string;
  readonly tag: symbol;
  /** The function the wrapper calls: what `proto[key]` was when it was installed. */
  readonly original: AnyMethod;
  /** The own property of `proto` the wrapper replaced (`undefined`: the method was inherited). */
  readonly previous: PropertyDescriptor | undefined;
  /** The function installed on `proto`. */
  readonly wrapper: AnyMethod;
  /** The explorers (one per app) that rely on it. */
  readonly users: Set<object>;
  /** `retired` is set when the last user is gone: the wrapper then passes every call straight through. */
  readonly state: { retired: boolean };
}

/** Every wrapper this package installed (live or retired) → its installation. */
const installations = new WeakMap<AnyMethod, Installation>();
/** Prototype → its live installations. */
const liveByProto = new WeakMap<object, Installation[]>();
let liveInstallations = 0;

/**
 * How many classes and instances are bound and how many wrappers are installed by the live apps of
 * this copy of the package — both 0 once every app that imported an integration has closed. For tests.
 * @internal
 */
export function explorerState(): { bound: number; wrappers: number } {
  return { bound: boundKeys, wrappers: liveInstallations };
}

/**
 * The live wrapper of integration `tag` that calls on `proto[key]` go through: installed on `proto`
 * itself (even under a wrapper of someone else), or reached through the prototype chain and this
 * package's own wrappers (a parent class's, another integration's).
 */
function findLive(proto: object, key: string, tag: symbol): Installation | undefined {
  const own = liveByProto.get(proto)?.find((i) => i.key === key && i.tag === tag);
  if (own !== undefined) return own;
  let fn = (proto as Record<string, unknown>)[key] as AnyMethod;
  for (let i = installations.get(fn); i !== undefined; i = installations.get(fn)) {
    if (i.tag === tag && !i.state.retired) return i;
    fn = i.original;
  }
  return undefined;
}

/**
 * Makes `user` rely on the wrapper of integration `tag` around `proto[key]`, installing it (an own
 * property of `proto`, with the method's metadata) if there is none yet. `undefined` when the method
 * is not a function or cannot be replaced (a frozen prototype).
 */
function acquire(proto: object, key: string, tag: symbol, make: (original: AnyMethod) => AnyMethod, user: object): Installation | undefined {
  const live = findLive(proto, key, tag);
  if (live !== undefined) {
    live.users.add(user);
    return live;
  }
  const current = (proto as Record<string, unknown>)[key];
  if (typeof current !== 'function') return undefined;
  const original = current as AnyMethod;
  const previous = Object.getOwnPropertyDescriptor(proto, key);
  const inner = make(original);
  // Read by the wrapper at call time: once retired, it only passes calls on.
  const state = { retired: false };
  const wrapper = function (this: unknown, ...args: unknown[]): unknown {
    return state.retired ? original.apply(this, args) : inner.apply(this, args);
  };
  const installation: Installation = { proto, key, tag, original, previous, wrapper, users: new Set([user]), state };
  copyMethodMetadata(original, wrapper);
  try {
    Object.defineProperty(proto, key, {
      value: wrapper,
      writable: previous?.writable ?? true,
      enumerable: previous?.enumerable ?? false,
      configurable: true,
    });
  } catch (error) {
    logger.warn(
      `Could not wrap ${describeMethod(proto, key)} to give its runs a context (${error instanceof Error ? error.message : String(error)}); ` +
        `it runs without one. Do not freeze the class's prototype, or open the context in the method with contextService.run().`,
    );
    return undefined;
  }
  installations.set(wrapper, installation);
  const list = liveByProto.get(proto);
  if (list === undefined) liveByProto.set(proto, [installation]);
  else list.push(installation);
  liveInstallations++;
  return installation;
}

/**
 * `user` no longer relies on `installation`. When it was the last user, the wrapper retires: it is
 * taken off the prototype (the descriptor it replaced comes back, unwrapping this package's retired
 * wrappers beneath it too), or, when something else was put over it since, left there passing calls
 * straight through.
 */
function release(installation: Installation, user: object): void {
  if (!installation.users.delete(user) || installation.users.size > 0) return;
  installation.state.retired = true;
  liveInstallations--;
  const { proto, key } = installation;
  const list = liveByProto.get(proto);
  if (list !== undefined) {
    list.splice(list.indexOf(installation), 1);
    if (list.length === 0) liveByProto.delete(proto);
  }
  if (Object.getOwnPropertyDescriptor(proto, key)?.value !== installation.wrapper) return;
  let restore = installation.previous;
  for (let below = installations.get(restore?.value as AnyMethod); below !== undefined && below.state.retired; ) {
    if (below.proto !== proto || below.key !== key) break;
    restore = below.previous;
    below = installations.get(restore?.value as AnyMethod);
  }
  try {
    if (restore === undefined) delete (proto as Record<string, unknown>)[key];
    else Object.defineProperty(proto, key, restore);
  } catch {
    // Made non-configurable since (someone froze the prototype): the retired wrapper stays, inert.
  }
}

function describeMethod(proto: object, key: string): string {
  const type = (proto as { constructor?: { name?: unknown } }).constructor;
  return `${typeof type?.name === 'string' && type.name !== '' ? type.name : 'a class'}.${key}`;
}

/** Makes the wrapper of one method of a class. It serves every app that binds the class, so it must read its binding at call time. @internal */
export type WrapperMaker = (original: AnyMethod) => AnyMethod;

/**
 * Base of every integration that wraps decorated methods (`@Cron()`, `@OnEvent()`, `@Processor()`'s
 * `process`, …) of the app's providers and controllers while the app is being built, before the
 * framework package reads them. A subclass says which methods it wants and how to wrap them
 * ({@link wrapperOf}, optionally {@link wantsClass}), then calls {@link scan} from its constructor.
 *
 * Each wrapped class, and each of this app's instances of it, is bound to the subclass's `binding`
 * (see {@link AppBindings}). One wrapper per method and integration serves every app that binds the
 * class; when the app closes (through its host's `onClose`, so after every undo step registered
 * later and whatever order Nest destroys modules in), it unbinds its classes and instances and lets
 * go of its wrappers: the last app to let go of one removes it, restoring the method's original
 * descriptor, or leaves it inert when something else was put over it since.
 * @internal
 */
export abstract class MethodExplorer<B extends AppBinding> implements OnModuleInit {
  private readonly classes = new Set<object>();
  private readonly instances = new Set<object>();
  private readonly installed = new Set<Installation>();

  protected constructor(
    /** Nest's view of the app's providers and controllers. */
    protected readonly discovery: DiscoveryService,
    /** Wrapped classes and instances → bindings, read by the wrappers at call time. */
    private readonly bindings: AppBindings<B>,
    /** What this app's wrappers need (its host, its options). */
    protected readonly binding: B,
    /** This integration's identity: one wrapper per method and tag. */
    private readonly tag: symbol,
  ) {
    binding.host.onClose(() => this.teardown());
  }

  /** Whether to look at the methods of class `type` at all. Default: every class. */
  protected wantsClass(_type: object): boolean {
    return true;
  }

  /**
   * How to wrap method `key` of class `type` (`method` is its current function, with its metadata),
   * or `undefined` to leave it alone.
   */
  protected abstract wrapperOf(key: string, method: AnyMethod, type: object): WrapperMaker | undefined;

  /** Whether this app wrapped methods of class `type` (and binds it). */
  protected bindsClass(type: unknown): boolean {
    return typeof type === 'function' && this.classes.has(type);
  }

  /**
   * Wraps the matching methods of every class-based provider and controller, and of the classes of
   * `useValue` providers (their instance already exists).
   */
  protected scan(): void {
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      const metatype = wrapper.metatype as unknown;
      if (typeof metatype === 'function' && !wrapper.inject) this.patchClass(metatype);
      else if (metatype === null || metatype === undefined) this.patchClass(classOf(wrapper.instance));
    }
  }

  private patchClass(type: unknown): void {
    if (typeof type !== 'function' || this.classes.has(type) || !this.wantsClass(type)) return;
    const proto = (type as { prototype?: unknown }).prototype;
    if (typeof proto !== 'object' || proto === null) return;
    let found = false;
    for (const key of methodNames(proto)) {
      const method = (proto as Record<string, unknown>)[key];
      if (typeof method !== 'function') continue;
      const make = this.wrapperOf(key, method as AnyMethod, type);
      if (make === undefined) continue;
      const installation = acquire(proto, key, this.tag, make, this);
      if (installation === undefined) continue;
      this.installed.add(installation);
      found = true;
    }
    if (!found) return;
    this.classes.add(type);
    this.bindings.bind(type, this.binding);
  }

  /**
   * Wraps the classes of `useFactory` providers (known by their instance only) and binds this app's
   * own instances of wrapped classes, so they keep this app's binding while another app shares the class.
   */
  onModuleInit(): void {
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      if (!wrapper.isDependencyTreeStatic()) continue;
      const instance = wrapper.instance as unknown;
      if (instance === null || typeof instance !== 'object') continue;
      const type = classOf(instance);
      this.patchClass(type);
      if (!this.bindsClass(type) || this.instances.has(instance)) continue;
      this.instances.add(instance);
      this.bindings.bind(instance, this.binding);
    }
  }

  /** Unbinds this app's classes and instances and lets go of its wrappers (run by the host when the app closes). */
  private teardown(): void {
    for (const key of [...this.classes, ...this.instances]) this.bindings.unbind(key, this.binding);
    this.classes.clear();
    this.instances.clear();
    for (const installation of [...this.installed].reverse()) release(installation, this);
    this.installed.clear();
  }
}

/** The class (constructor) of `instance`, if it is an object. @internal */
export function classOf(instance: unknown): object | undefined {
  if (instance === null || typeof instance !== 'object') return undefined;
  const type = (instance as { constructor?: unknown }).constructor;
  return typeof type === 'function' ? type : undefined;
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(MethodExplorer);
