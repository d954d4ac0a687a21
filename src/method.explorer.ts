import type { OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import type { DiscoveryService } from '@nestjs/core';
import { methodNames, wrapMethod, type AnyMethod } from './with-context.decorator.js';

/**
 * Which app (binding) each wrapped class and each of its instances belongs to. Every app that
 * wraps a class or owns an instance pushes its binding on that key's stack and removes its own entry
 * when it closes; the top of the stack (the latest live app) is the current one. An instance bound
 * by its own app therefore keeps that app's binding while other apps share its class, and a class
 * falls back to the earlier app's binding when a later app closes.
 * @internal
 */
export class AppBindings<B> {
  private readonly stacks = new WeakMap<object, B[]>();

  /** Makes `binding` the current one of `key` (a class or an instance). */
  bind(key: object, binding: B): void {
    const stack = this.stacks.get(key);
    if (stack === undefined) this.stacks.set(key, [binding]);
    else stack.push(binding);
  }

  /** Removes `binding` (the latest entry of it) from the stack of `key`. */
  unbind(key: object, binding: B): void {
    const stack = this.stacks.get(key);
    if (stack === undefined) return;
    const index = stack.lastIndexOf(binding);
    if (index !== -1) stack.splice(index, 1);
    if (stack.length === 0) this.stacks.delete(key);
  }

  /** The current binding of `instance`: its own, else its class's; `undefined` when neither is bound. */
  of(instance: unknown): B | undefined {
    if (typeof instance !== 'object' || instance === null) return undefined;
    const own = this.stacks.get(instance);
    if (own !== undefined) return own[own.length - 1];
    const type = (instance as { constructor?: unknown }).constructor;
    const stack = typeof type === 'function' ? this.stacks.get(type) : undefined;
    return stack?.[stack.length - 1];
  }
}

/**
 * Base of the integrations that wrap decorated methods (`@Cron()`, `@OnEvent()`, …) of the app's
 * providers and controllers while the app is being built, before the framework package reads them.
 * A subclass says which methods it wants and how to wrap them, then calls {@link scan} from its
 * constructor. Each wrapped class, and each of this app's instances of it, is bound to the
 * subclass's `binding` (the app it belongs to) until the app closes; see {@link AppBindings}.
 * @internal
 */
export abstract class MethodExplorer<B> implements OnModuleInit, OnModuleDestroy {
  private readonly classes = new Set<object>();
  private readonly instances = new Set<object>();

  protected constructor(
    private readonly discovery: DiscoveryService,
    /** Wrapped classes and instances → bindings, read by the wrappers at call time. */
    private readonly bindings: AppBindings<B>,
    /** What this app's wrappers need (its host, its options). */
    protected readonly binding: B,
    /** Marks this integration's wrappers, so a method is never wrapped twice. */
    private readonly tag: symbol,
  ) {}

  /** Whether `method` (a function on a prototype) is one to wrap. */
  protected abstract matches(method: unknown): boolean;

  /** The wrapper of one matched method. */
  protected abstract wrap(original: AnyMethod): AnyMethod;

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
    if (typeof type !== 'function' || this.classes.has(type)) return;
    const proto = (type as { prototype?: object }).prototype;
    if (proto === undefined || proto === null) return;
    let found = false;
    for (const key of methodNames(proto)) {
      if (!this.matches((proto as Record<string, unknown>)[key])) continue;
      wrapMethod(proto, key, this.tag, (original) => this.wrap(original));
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
      if (type === undefined || !this.classes.has(type) || this.instances.has(instance)) continue;
      this.instances.add(instance);
      this.bindings.bind(instance, this.binding);
    }
  }

  /** Unbinds this app's classes and instances: an earlier app still alive becomes current again. */
  onModuleDestroy(): void {
    for (const key of [...this.classes, ...this.instances]) this.bindings.unbind(key, this.binding);
    this.classes.clear();
    this.instances.clear();
  }
}

/** The class (constructor) of `instance`, if it is an object. @internal */
export function classOf(instance: unknown): object | undefined {
  if (instance === null || typeof instance !== 'object') return undefined;
  const type = (instance as { constructor?: unknown }).constructor;
  return typeof type === 'function' ? type : undefined;
}
