import { ContextError } from '../errors.js';
import { resolveHost } from '../runtime/apps.js';
import { runInRecord, storage } from '../record/context-record.js';
import { copyMethodMetadata, type AnyMethod } from '../runtime/method-explorer.js';
import type { ContextSource } from '../interfaces/context-init.interface.js';

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

// ---------------------------------------------------------------------------------------------
// @WithContext()
// ---------------------------------------------------------------------------------------------

/**
 * Runs the decorated method inside a fresh context (fresh correlation id, new trace) — for
 * standalone apps (`NestFactory.createApplicationContext`), scripts, CLI commands and jobs you
 * trigger yourself. Works on sync and async methods (a returned promise stays inside the context
 * until it settles; a returned Observable runs inside it on every subscription) and without
 * dependency injection. The context class and options are those of
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
      return runInRecord(record, () => method.apply(this, args));
    };
    copyMethodMetadata(method, wrapped);
    (descriptor as PropertyDescriptor).value = wrapped;
    return descriptor;
  };
}
