/**
 * The fallback envelope: for transports without message metadata (TCP and Redis on NestJS 11 — on
 * NestJS 12 they use `packet.metadata` unless `forceEnvelope` is set —, MQTT before v5, and NATS
 * when no header implementation can be loaded) the payload travels as
 * `{ "__nestjs_context__": { <headers> }, "data": <payload> }` and the receiving server unwraps it
 * before any guard, interceptor, pipe or handler sees it.
 */

/** The key of the fallback envelope that holds the propagation headers. */
export const CONTEXT_ENVELOPE_KEY = '__nestjs_context__';

/** The fallback envelope's shape (what a non-Nest producer may send to carry a context). */
export interface ContextEnvelope<T = unknown> {
  /** Propagation headers: `traceparent`, `tracestate`, `baggage` and the correlation id header. */
  [CONTEXT_ENVELOPE_KEY]: Record<string, string>;
  /** The original payload. */
  data: T;
}

/** Wraps a payload with the given headers. @internal */
export function wrapEnvelope<T>(data: T, headers: Record<string, string>): ContextEnvelope<T> {
  return { [CONTEXT_ENVELOPE_KEY]: headers, data };
}

/**
 * Whether `value` is a fallback envelope: a plain object whose own keys are exactly the envelope key
 * and `data`. Anything else (a user payload that merely has one of those keys) is left alone.
 * @internal
 */
export function isEnvelope(value: unknown): value is { [CONTEXT_ENVELOPE_KEY]: unknown; data: unknown } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  const keys = Object.keys(value);
  return (
    keys.length === 2 &&
    Object.prototype.hasOwnProperty.call(value, CONTEXT_ENVELOPE_KEY) &&
    Object.prototype.hasOwnProperty.call(value, 'data')
  );
}
