import type { OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import type { DiscoveryService } from '@nestjs/core';
import { methodNames, wrapMethod, type AnyMethod } from './with-context.decorator.js';

/**
 * Base of the integrations that wrap decorated methods (`@Cron()`, `@OnEvent()`, …) of the app's
 * providers and controllers while the app is being built, before the framework package reads them.
 * A subclass says which methods it wants and how to wrap them, then calls {@link scan} from its
 * constructor. Each wrapped class is bound to the subclass's `binding` (the app it belongs to; the
 * last app wins) until the app closes.
 * @internal
 */
export abstract class MethodExplorer<B> implements OnModuleInit, OnModuleDestroy {
  private readonly classes = new Set<object>();

  protected constructor(
    private readonly discovery: DiscoveryService,
    /** Wrapped classes → binding, read by the wrappers at call time. */
    private readonly bindings: WeakMap<object, B>,
    /** What this app's wrappers need (its host, its options). */
    protected readonly binding: B,
    /** Marks this integration's wrappers, so a method is never wrapped twice. */
    private readonly tag: symbol,
  ) {}

  /** Whether `method` (a function on a prototype) is one to wrap. */
  protected abstract matches(method: unknown): boolean;

  /** The wrapper of one matched method. */
  protected abstract wrap(original: AnyMethod): AnyMethod;

  /** Wraps the matching methods of every class-based provider and controller. */
  protected scan(): void {
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      const metatype = wrapper.metatype as unknown;
      if (typeof metatype === 'function' && !wrapper.inject) this.patchClass(metatype);
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
    this.bindings.set(type, this.binding);
  }

  /** Providers given as `useValue`/`useFactory` are known by their instance only. */
  onModuleInit(): void {
    for (const wrapper of this.discovery.getProviders()) {
      if (!wrapper.isDependencyTreeStatic() || !wrapper.inject) continue;
      const instance = wrapper.instance as unknown;
      if (instance !== null && typeof instance === 'object') this.patchClass((instance as { constructor: unknown }).constructor);
    }
  }

  /** Lets a later app bind the classes again. */
  onModuleDestroy(): void {
    for (const type of this.classes) if (this.bindings.get(type) === this.binding) this.bindings.delete(type);
  }
}

/** The binding of the class of `instance` in `bindings`, if any. @internal */
export function bindingOf<B>(bindings: WeakMap<object, B>, instance: unknown): B | undefined {
  const type = typeof instance === 'object' && instance !== null ? (instance as { constructor: object }).constructor : undefined;
  return type === undefined ? undefined : bindings.get(type);
}
