import { ContextNotActiveError } from '../errors.js';
import { storage } from '../record/context-record.js';
import { injectRecord, outboundHeaders } from '../propagation/inject.js';
import type { CarrierSetter } from '../propagation/carrier.js';
import type { OutboundKind } from '../record/trace-source.js';
import { randomSpanId, randomTraceId } from '../propagation/ids.js';
import { FLAG_RANDOM, formatTraceparent } from '../propagation/traceparent.js';

/**
 * Augment this interface once to type {@link currentContext} and the default of `ContextService<T>`
 * with your context class:
 *
 * @example
 * declare module 'nestjs-context' {
 *   interface ContextRegistry { context: MyContext }
 * }
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface ContextRegistry {}

/** The context type registered through {@link ContextRegistry}, or a loose record when none is. */
export type RegisteredContext = ContextRegistry extends {
  /** Your context class's instance type, as declared in {@link ContextRegistry}. */
  context: infer C extends object;
} ? C : Record<string, unknown>;

/** Options of {@link getOutboundHeaders} and of the client integrations. */
export interface OutboundOptions {
  /**
   * Outside any context, send a `traceparent` that starts a new trace (random ids, not sampled)
   * instead of no context headers at all. Default: `false`.
   */
  newTraceOutsideContext?: boolean;
}

/**
 * Writes what an outgoing call made now from the active context carries into `carrier` through
 * `setter` (see `injectRecord`); outside a context nothing, or a new trace's `traceparent` with
 * {@link OutboundOptions.newTraceOutsideContext}. Every client integration writes through here
 * (the HTTP clients with `kind` `'http'`, see `record/trace-source.ts`). @internal
 */
export function injectActive<C>(carrier: C, setter: CarrierSetter<C>, options?: OutboundOptions, kind?: OutboundKind): C {
  const record = storage.getStore();
  if (record !== undefined) injectRecord(record, carrier, setter, kind);
  else if (options?.newTraceOutsideContext === true) setter.set(carrier, 'traceparent', formatTraceparent(randomTraceId(), randomSpanId(), FLAG_RANDOM));
  return carrier;
}

/**
 * Headers for an outgoing call made now from the active context (`traceparent` with the same trace
 * id and a fresh parent id, `tracestate`, `baggage`, correlation id), as a fresh object, or `{}`
 * outside a context (see {@link OutboundOptions.newTraceOutsideContext}). For clients without an
 * integration; `contextService.inject(carrier, setter)` writes the same into any other carrier.
 */
export function getOutboundHeaders(options?: OutboundOptions): Record<string, string> {
  const record = storage.getStore();
  if (record !== undefined) return outboundHeaders(record);
  if (options?.newTraceOutsideContext === true) return { traceparent: formatTraceparent(randomTraceId(), randomSpanId(), FLAG_RANDOM) };
  return {};
}

function active(): object {
  const record = storage.getStore();
  if (record === undefined) throw ContextNotActiveError.create('currentContext');
  return record.context;
}

/**
 * The context of the current request, usable anywhere — plain functions, static helpers, code
 * outside dependency injection. It stands for the active context object: reading, writing and
 * calling methods act on that object (`currentContext.correlationId`). Typed through {@link ContextRegistry}.
 * To get the object itself (for identity or to pass it on), use `ContextService.get()`.
 * @throws ContextNotActiveError on any use outside a context.
 */
export const currentContext: RegisteredContext = new Proxy(Object.create(null) as object, {
  get(_target, key) {
    const context = active();
    const value: unknown = Reflect.get(context, key, context);
    return typeof value === 'function' && key !== 'constructor' ? value.bind(context) : value;
  },
  set: (_target, key, value) => Reflect.set(active(), key, value),
  has: (_target, key) => Reflect.has(active(), key),
  deleteProperty: (_target, key) => Reflect.deleteProperty(active(), key),
  ownKeys: () => Reflect.ownKeys(active()),
  getOwnPropertyDescriptor(_target, key) {
    const descriptor = Reflect.getOwnPropertyDescriptor(active(), key);
    return descriptor && { ...descriptor, configurable: true };
  },
  defineProperty: (_target, key, descriptor) => Reflect.defineProperty(active(), key, descriptor),
  getPrototypeOf: () => Reflect.getPrototypeOf(active()),
}) as RegisteredContext;
