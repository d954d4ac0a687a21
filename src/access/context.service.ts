import { Injectable, type Type } from '@nestjs/common';
import { ContextError, ContextNotActiveError } from '../errors.js';
import { ContextHost, reportFailure } from '../runtime/context-host.js';
import { storage } from '../record/context-record.js';
import { otherAppError } from './context-proxy.js';
import type { RegisteredContext } from './current-context.js';
import type { BaggageMember, TraceInfo } from '../interfaces/trace-info.interface.js';

/** Options of {@link ContextService.run}. */
export interface ContextRunOptions<T> {
  /** Use this object as the context instead of building a fresh one. */
  context?: T;
  /** Use this correlation id (checked with the module's validator) instead of a fresh one. */
  correlationId?: string;
}

/**
 * The context, injectable into any singleton without making it request-scoped.
 * Type it at the injection site: `constructor(private readonly context: ContextService<MyContext>)`.
 * It belongs to its app: `get()` only ever returns a context of the app's own context class.
 *
 * @typeParam T your context class; defaults to the one registered through `ContextRegistry`.
 */
@Injectable()
export class ContextService<T extends object = RegisteredContext> {
  /** Built by Nest. @internal */
  constructor(private readonly host: ContextHost) {}

  /**
   * The context of the current request, message or job (the same object every access path returns).
   * @throws ContextNotActiveError outside a context; the message says how to open one.
   */
  get(): T {
    const record = storage.getStore();
    if (record === undefined) throw ContextNotActiveError.create('ContextService.get()');
    if (record.config.contextClass !== this.host.contextClass) throw this.otherApp(record.config.contextClass);
    return record.context as T;
  }

  /**
   * The context of the current request, or `undefined` outside a context and when your context class
   * or factory failed to build it. Never throws — for exception filters and loggers, which must work
   * on exactly those error paths. A build that fails here is logged once through Nest's logger; `get()`
   * and the other access paths rethrow it. The correlation id stays readable through
   * {@link correlationId} either way.
   */
  getOrUndefined(): T | undefined {
    const record = storage.getStore();
    if (record === undefined || record.failed || record.config.contextClass !== this.host.contextClass) return undefined;
    try {
      return record.context as T;
    } catch (error) {
      reportFailure(error instanceof Error ? error : new Error(String(error)));
      return undefined;
    }
  }

  /** The correlation id of the current context, or `undefined` outside one. Does not build the context. */
  get correlationId(): string | undefined {
    return storage.getStore()?.correlationId;
  }

  /**
   * The W3C trace of the current context (trace id, this hop's span id, the caller's parent id,
   * flags, tracestate), read-only; `undefined` outside a context.
   */
  get trace(): TraceInfo | undefined {
    return storage.getStore()?.trace;
  }

  /** The inbound W3C baggage members of the current context, read-only; `[]` outside a context. */
  get baggage(): readonly BaggageMember[] {
    return storage.getStore()?.baggage ?? [];
  }

  private otherApp(found: Type<object>): ContextError {
    return otherAppError(
      'ContextService.get()',
      'this ContextService',
      found,
      this.host.contextClass,
      'read the context through the ContextService of the app that handles the request, or open one of this app with contextService.run(() => ...).',
    );
  }

  /** Whether a context is active here. */
  get active(): boolean {
    return storage.getStore() !== undefined;
  }

  /**
   * Runs `fn` inside a new context — a fresh one, or the `context`/`correlationId` given — and
   * returns its result (a promise stays inside the context until it settles). For cron jobs, queue
   * consumers, scripts and tests. Nested calls open a new context; the outer one is back afterwards.
   *
   * A `correlationId` your validator cannot check (it throws) is reported through Nest's logger and
   * replaced by a fresh id, like everywhere else; a failing generator gives a default id.
   *
   * @example await contextService.run(() => this.report.send(), { correlationId: job.data.correlationId });
   * @throws ContextError when `correlationId` does not pass the module's validator.
   */
  run<R>(fn: () => R, options: ContextRunOptions<T> = {}): R {
    let { correlationId } = options;
    let valid: boolean;
    try {
      valid = typeof correlationId === 'string' && this.host.options.validate(correlationId);
    } catch (error) {
      reportFailure(error instanceof ContextError ? error : new ContextError(String(error)));
      correlationId = undefined;
      valid = true;
    }
    if (correlationId !== undefined && !valid) {
      throw new ContextError(
        `ContextService.run(): correlationId ${JSON.stringify(String(correlationId).slice(0, 40))} is not valid ` +
          `for this app's validator. Pass an id that passes correlationId.validate, or leave it out to get a fresh one.`,
      );
    }
    const record = this.host.create({ correlationId, context: options.context });
    return storage.run(record, fn);
  }
}
