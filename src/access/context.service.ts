import { Injectable, type ArgumentsHost, type Type } from '@nestjs/common';
import { ContextError, ContextNotActiveError } from '../errors.js';
import { ContextHost, reportFailure } from '../runtime/context-host.js';
import { recordOfRequest, runInRecord, storage } from '../record/context-record.js';
import { withIdField } from '../entry/client-headers.js';
import { ownCorrelationId } from '../runtime/options.js';
import { otherAppError } from './context-proxy.js';
import type { RegisteredContext } from './current-context.js';
import type { BaggageMember, TraceInfo } from '../interfaces/trace-info.interface.js';
import { headerMapSetter, type CarrierGetter, type CarrierSetter } from '../propagation/carrier.js';
import { injectActive } from './current-context.js';
import { markInternal } from '../runtime/internal.js';

/**
 * Options of {@link ContextService.run}. Everything is optional: without options, `run()` opens a
 * fresh context.
 *
 * @typeParam T your context class.
 * @typeParam C the carrier type of `headers` (a header map unless you pass a `getter`).
 */
export interface ContextRunOptions<T, C = Readonly<Record<string, unknown>>> {
  /** Use this object as the context instead of building a fresh one. */
  context?: T;
  /** Use this correlation id (checked with the module's validator) instead of a fresh one; it wins over one in `headers`. */
  correlationId?: string;
  /**
   * Continue the context of whoever sent these propagation headers: correlation id, `traceparent`,
   * `tracestate` and `baggage`, read under the app's trust policy (a request predicate cannot vouch
   * for headers that did not come with an HTTP request: see `trusted`). A plain header map is read by
   * default (own properties, any spelling, strings, lists or bytes); pass a `getter` for any other
   * carrier (message attributes, record headers).
   */
  headers?: C;
  /** Reads `headers` when it is not a plain header map. */
  getter?: CarrierGetter<C>;
  /**
   * Trust `headers` whatever the app's `trustInbound` policy says, because you know where they come
   * from (your own queue, your own gateway). Default: `false` (the policy decides).
   */
  trusted?: boolean;
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

  /**
   * `body` plus the correlation id of the request being answered, for exception filters that write
   * the response themselves: a copy of `body` with the field `correlationId` (or the name set with
   * the option `correlationId.errorBody`). `body` is returned as it is when it already has the field,
   * is not a plain object, or when there is no context (outside one, or another framework's request).
   * Pass the filter's `host`: it finds the request's id where no context is active (`enterEarly: false`).
   * Never throws.
   *
   * @example
   * response.status(status).json(ContextService.withCorrelationId({ statusCode: status, message }, host));
   */
  static withCorrelationId<B extends object>(body: B, host?: ArgumentsHost): B {
    try {
      const record =
        (host !== undefined && host.getType() === 'http' ? recordOfRequest(host.getArgByIndex(0)) : undefined) ?? storage.getStore();
      if (record === undefined) return body;
      return withIdField(body, record.config.errorBodyField ?? 'correlationId', record.correlationId);
    } catch {
      return body; // a host or body whose properties cannot be read: the body goes out as it is
    }
  }

  /** Whether a context is active here. */
  get active(): boolean {
    return storage.getStore() !== undefined;
  }

  /**
   * Runs `fn` inside a new context and returns its result (a promise stays inside the context until
   * it settles; an Observable runs inside it on every subscription, made later or elsewhere). The context is fresh, or built from `options`: continued from the propagation
   * `headers` of whoever sent a message (for consumers the library does not wrap: SQS, a raw kafkajs
   * consumer, a Lambda handler), and/or with the `context` object or `correlationId` given (a given
   * `context` whose correlation id field holds a valid id is opened under that id, over one in
   * `headers`, so the object and the library agree). For cron
   * jobs, queue consumers, scripts and tests. Nested calls open a new context; the outer one is back
   * afterwards.
   *
   * A `correlationId` your validator cannot check (it throws) is reported through Nest's logger and
   * replaced by a fresh id, like everywhere else; a failing generator gives a default id.
   *
   * @example await contextService.run(() => this.report.send(), { correlationId: job.data.correlationId });
   * @example await contextService.run(() => this.handle(message), { headers: message.headers });
   * @throws ContextError when `correlationId` does not pass the module's validator.
   */
  run<R, C = Readonly<Record<string, unknown>>>(fn: () => R, options: ContextRunOptions<T, C> = {}): R {
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
    const { headers, context } = options;
    // A given context that holds a valid id of its own keeps it (the object and the library agree).
    correlationId ??= ownCorrelationId(this.host.options, context);
    const record =
      headers === undefined || headers === null
        ? this.host.create({ correlationId, context })
        : this.host.continueFrom(headers, { correlationId, context, getter: options.getter, trusted: options.trusted });
    return runInRecord(record, fn);
  }

  /**
   * Writes the propagation headers of an outgoing call made now from the active context into
   * `carrier` — `traceparent` (same trace id, a fresh parent id per call), `tracestate`, `baggage`
   * and the correlation id header — and returns it. The default setter writes into a plain object,
   * a `Headers`, a `Map` or an `AxiosHeaders`, keeping any field the carrier already holds; pass a
   * `setter` for any other carrier (message attributes, record headers). Outside a context it writes
   * nothing. The counterpart of `run(fn, { headers })` on the receiving side.
   *
   * @example await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody, MessageAttributes: contextService.inject({}, sqsSetter) }));
   */
  inject<C>(carrier: C, setter?: CarrierSetter<C>): C {
    return injectActive(carrier, setter ?? (headerMapSetter as CarrierSetter<C>));
  }
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextService);
