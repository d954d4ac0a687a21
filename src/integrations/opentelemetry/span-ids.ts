import type { SpanContext } from '@opentelemetry/api';

/**
 * Whether `id` is a string of `length` hex digits, not all zeros: OTel's `isValidTraceId` /
 * `isValidSpanId` rule (either case of a–f, as OTel accepts) in one pass. Theirs compares the id
 * with a string of zeros too, and an id that OTel's propagator sliced out of a header compares on
 * V8's slow path. (`@opentelemetry/api` up to 1.9 tests a regular expression, which turns a
 * non-string into text first; this rejects every non-string.) @internal
 */
export function validHexId(id: unknown, length: number): boolean {
  if (typeof id !== 'string' || id.length !== length) return false;
  let nonZero = false;
  for (let i = 0; i < length; i++) {
    const c = id.charCodeAt(i);
    if (c === 0x30) continue;
    if ((c > 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)) nonZero = true;
    else return false;
  }
  return nonZero;
}

/** OTel's `isSpanContextValid`, through {@link validHexId}. @internal */
export function validSpanContext(sc: SpanContext): boolean {
  return validHexId(sc.traceId, 32) && validHexId(sc.spanId, 16);
}
