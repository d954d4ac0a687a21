import { ContextError } from './context.errors.js';
import { resolveHost } from './context.apps.js';
import { runInRecord, storage } from './context.storage.js';
import type { ContextSource } from './interfaces/context-init.interface.js';

/** Options of {@link WithContext}. */
export interface WithContextOptions {
  /**
   * When a context is already active where the method is called, run the method in it instead of
   * opening a new one. Default: `false` (every call gets a fresh context with a fresh id).
   */
  inherit?: boolean;
  /** The `source` your context class receives in its `ContextInit`. Default: `'manual'`. */
  source?: ContextSource;
}

/** Runs `fn` inside `record`; see `runInRecord` (kept under this name for the integrations). @internal */
export const runIn = runInRecord;

// ---------------------------------------------------------------------------------------------
// Method wrapping that keeps decorator metadata (internal, shared by the integrations).
// ---------------------------------------------------------------------------------------------

/** A method as the wrappers see it. @internal */
export type AnyMethod = (this: unknown, ...args: unknown[]) => unknown;

interface MetadataReflect {
  getOwnMetadataKeys?(target: object): unknown[];
  getOwnMetadata?(key: unknown, target: object): unknown;
  defineMetadata?(key: unknown, value: unknown, target: object): void;
}

/** Marks a wrapper made by {@link wrapMethod}; the value is the wrapped (original) function. */
const WRAPPED = Symbol.for('nestjs-context:wrapped');

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
 * Replaces the method `key` seen on `proto` with `make(original)`, as an own property of `proto`,
 * keeping its metadata. Idempotent per `tag`: a method already wrapped with the same tag is left
 * alone. Returns whether it wrapped. @internal
 */
export function wrapMethod(proto: object, key: string | symbol, tag: symbol, make: (original: AnyMethod) => AnyMethod): boolean {
  const original = (proto as Record<string | symbol, unknown>)[key];
  if (typeof original !== 'function') return false;
  let probe: unknown = original;
  while (typeof probe === 'function') {
    if ((probe as unknown as Record<symbol, unknown>)[tag] === true) return false;
    probe = (probe as unknown as Record<symbol, unknown>)[WRAPPED];
  }
  const wrapped = make(original as AnyMethod);
  copyMethodMetadata(original, wrapped);
  Object.defineProperty(wrapped, WRAPPED, { value: original });
  Object.defineProperty(wrapped, tag, { value: true });
  const own = Object.getOwnPropertyDescriptor(proto, key);
  Object.defineProperty(proto, key, {
    value: wrapped,
    writable: own?.writable ?? true,
    enumerable: own?.enumerable ?? false,
    configurable: true,
  });
  return true;
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

// ---------------------------------------------------------------------------------------------
// @WithContext()
// ---------------------------------------------------------------------------------------------

/**
 * Runs the decorated method inside a fresh context (fresh correlation id, new trace) — for
 * standalone apps (`NestFactory.createApplicationContext`), scripts, CLI commands and jobs you
 * trigger yourself. Works on sync and async methods (a returned promise stays inside the context
 * until it settles) and without dependency injection. The context class and options are those of
 * the app the method belongs to: the app that built the object (a provider or controller); for an
 * object no app built, the app of the active context, else the only app running — with several
 * apps running and none of those, the call throws a `ContextError` that says what to do.
 *
 * @example
 * class ReportCommand {
 *   \@WithContext()
 *   async run() { logger.log(currentContext.correlationId); }
 * }
 * @throws ContextError when no app can be determined (see above); the message says how to fix it.
 */
export function WithContext(options: WithContextOptions = {}): MethodDecorator {
  const inherit = options.inherit === true;
  const source = options.source ?? 'manual';
  return (target, key, descriptor) => {
    const owner = typeof target === 'function' ? target.name : (target.constructor as { name?: string } | undefined)?.name;
    const label = `@WithContext() on ${owner ?? 'anonymous class'}.${String(key)}`;
    const original = descriptor.value as unknown;
    if (typeof original !== 'function') {
      throw new ContextError(`${label}: it decorates methods only, and this member is not a method. Move it onto a method.`);
    }
    const method = original as AnyMethod;
    const wrapped = function (this: unknown, ...args: unknown[]): unknown {
      if (inherit && storage.getStore() !== undefined) return method.apply(this, args);
      const record = resolveHost(label, this).create({ source });
      return storage.run(record, () => method.apply(this, args));
    };
    copyMethodMetadata(method, wrapped);
    (descriptor as PropertyDescriptor).value = wrapped;
    return descriptor;
  };
}
