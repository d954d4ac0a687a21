import { isNonZeroLowerHex, isValidSpanId, isValidTraceId } from './ids.js';

/** The fields of a parsed W3C `traceparent` header (Trace Context Level 2). */
export interface TraceParent {
  /** Version byte as received (`0x00`–`0xfe`); a version above `0x00` was parsed by the forward-compatibility rules. */
  readonly version: number;
  /** 32 lowercase hex characters, never all zeros. */
  readonly traceId: string;
  /** 16 lowercase hex characters, never all zeros: the caller's span id. */
  readonly parentId: string;
  /** The `trace-flags` byte as received (0–255), unmasked; test single bits, never compare the whole value. */
  readonly flags: number;
}

/** `trace-flags` bit: the caller may have recorded trace data. */
export const FLAG_SAMPLED = 0x01;

/** `trace-flags` bit: at least the right-most 7 bytes of the `trace-id` were generated at random. */
export const FLAG_RANDOM = 0x02;

/** The flag bits version `00` defines; every other bit MUST be sent as zero. */
export const KNOWN_FLAGS = FLAG_SAMPLED | FLAG_RANDOM;

/** Length of a version `00` value: `vv-` + 32 + `-` + 16 + `-` + 2. */
const V00_LENGTH = 55;

const DASH = 0x2d;

/** Value of one lowercase hex digit, or -1 (uppercase, non-hex and non-ASCII characters included). */
function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** The byte encoded by the two lowercase hex characters at `i`, or -1. */
function hexByte(s: string, i: number): number {
  const hi = hexDigit(s.charCodeAt(i));
  const lo = hexDigit(s.charCodeAt(i + 1));
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo;
}

/** OWS (RFC 9110 §5.6.3): space or horizontal tab. */
function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/**
 * Parses `traceparent` header value(s) as Node gives them (`string | string[] | undefined`).
 * Returns `undefined` when the header is absent or invalid, in which case the caller restarts the
 * trace and MUST NOT parse `tracestate`. Never throws.
 *
 * Rules (Trace Context Level 2 §traceparent, §Versioning of traceparent, Processing Model):
 * - OWS (spaces, tabs) around the value is ignored;
 * - several header fields (an array of more than one value, or one value combined by a proxy or by
 *   Node as `a, b`) are invalid;
 * - version: 2 lowercase hex characters followed by `-`; `ff` is invalid;
 * - version `00`: exactly 55 characters, `00-{32 hex}-{16 hex}-{2 hex}`;
 * - a higher version: at least 55 characters with the version `00` layout at the start; anything
 *   after the flags must begin with `-` and is ignored (it must not contain `,`, the mark of
 *   combined header fields);
 * - hex is lowercase ASCII only; an all-zero trace-id or parent-id is invalid.
 */
export function parseTraceparent(value: string | readonly string[] | undefined): TraceParent | undefined {
  const s = singleField(value);
  if (s === undefined) return undefined;

  let start = 0;
  let end = s.length;
  while (start < end && isOws(s.charCodeAt(start))) start++;
  while (end > start && isOws(s.charCodeAt(end - 1))) end--;
  const length = end - start;
  if (length < V00_LENGTH) return undefined;

  const version = hexByte(s, start);
  if (version < 0 || version === 0xff) return undefined;
  if (version === 0x00) {
    if (length !== V00_LENGTH) return undefined;
  } else if (length > V00_LENGTH) {
    if (s.charCodeAt(start + V00_LENGTH) !== DASH) return undefined;
    const comma = s.indexOf(',', start + V00_LENGTH);
    if (comma !== -1 && comma < end) return undefined;
  }

  if (
    s.charCodeAt(start + 2) !== DASH ||
    s.charCodeAt(start + 35) !== DASH ||
    s.charCodeAt(start + 52) !== DASH ||
    !isNonZeroLowerHex(s, start + 3, start + 35) ||
    !isNonZeroLowerHex(s, start + 36, start + 52)
  ) {
    return undefined;
  }
  const flags = hexByte(s, start + 53);
  if (flags < 0) return undefined;

  return {
    version,
    traceId: s.slice(start + 3, start + 35),
    parentId: s.slice(start + 36, start + 52),
    flags,
  };
}

/**
 * Formats a version `00` `traceparent` value. `flags` is reduced to the bits version `00` defines
 * ({@link FLAG_SAMPLED}, {@link FLAG_RANDOM}); all other bits are sent as zero, as the spec requires.
 * Throws a `TypeError` when `traceId` or `parentId` is not a valid id (a programmer error: ids come
 * from {@link parseTraceparent} or the generators in `ids.ts`), so an invalid header is never produced.
 */
export function formatTraceparent(traceId: string, parentId: string, flags: number): string {
  if (!isValidTraceId(traceId)) throw new TypeError(`Invalid trace-id: ${JSON.stringify(traceId)}`);
  if (!isValidSpanId(parentId)) throw new TypeError(`Invalid parent-id: ${JSON.stringify(parentId)}`);
  return `00-${traceId}-${parentId}-0${flags & KNOWN_FLAGS}`;
}

/** The one header field value, or `undefined` when absent, repeated or not a string. */
function singleField(value: string | readonly string[] | undefined): string | undefined {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value) || value.length !== 1) return undefined;
  const only: unknown = value[0];
  return typeof only === 'string' ? only : undefined;
}
