import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';

/**
 * Random bytes are drawn from one pooled buffer, refilled with `crypto.randomFillSync` when used up,
 * so generating an id costs no system call and no allocation besides the returned string.
 */
const POOL_SIZE = 8192;
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let poolOffset = POOL_SIZE;

/** Reserves `size` fresh random bytes in the pool and returns where they start. */
function reserve(size: number): number {
  if (poolOffset + size > POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const start = poolOffset;
  poolOffset += size;
  return start;
}

/** True when the `size` pooled bytes starting at `start` are all zero. */
function allZero(start: number, size: number): boolean {
  for (let i = start; i < start + size; i++) if (pool[i] !== 0) return false;
  return true;
}

/** Char codes of the lowercase hex digits, by value. */
const HEX = Uint8Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

/**
 * The 8 pooled bytes at `at` as 16 lowercase hex characters, built in JavaScript: one string
 * allocation, where `Buffer.toString('hex')` crosses into C++ (several hundred instructions more).
 */
function hex8(at: number): string {
  const p = pool;
  return String.fromCharCode(
    HEX[p[at] >> 4], HEX[p[at] & 15],
    HEX[p[at + 1] >> 4], HEX[p[at + 1] & 15],
    HEX[p[at + 2] >> 4], HEX[p[at + 2] & 15],
    HEX[p[at + 3] >> 4], HEX[p[at + 3] & 15],
    HEX[p[at + 4] >> 4], HEX[p[at + 4] & 15],
    HEX[p[at + 5] >> 4], HEX[p[at + 5] & 15],
    HEX[p[at + 6] >> 4], HEX[p[at + 6] & 15],
    HEX[p[at + 7] >> 4], HEX[p[at + 7] & 15],
  );
}

/** Reserves `size` (8 or 16) fresh random bytes that are not all zeros and returns where they start. */
function nonZero(size: number): number {
  for (;;) {
    const start = reserve(size);
    if (!allZero(start, size)) return start;
  }
}

/**
 * A new W3C `trace-id`: 32 lowercase hex characters (16 bytes), never all zeros. All 16 bytes are
 * drawn from a CSPRNG, so the `random-trace-id` flag (`FLAG_RANDOM`) may be set for it.
 */
export function randomTraceId(): string {
  const start = nonZero(16);
  return hex8(start) + hex8(start + 8);
}

/** A new W3C `parent-id` / span id: 16 lowercase hex characters (8 bytes), never all zeros. */
export function randomSpanId(): string {
  return hex8(nonZero(8));
}

/**
 * Internal: true when `s[start..end)` is lowercase hex (ASCII `0-9a-f` only) with at least one
 * non-`0` character. Characters past the end of `s` fail the check. Not re-exported by the index.
 */
export function isNonZeroLowerHex(s: string, start: number, end: number): boolean {
  let nonZero = false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x30) continue;
    if ((c > 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)) nonZero = true;
    else return false;
  }
  return nonZero;
}

/** True for a valid W3C `trace-id`: exactly 32 lowercase hex characters, not all zeros. */
export function isValidTraceId(id: string): boolean {
  return typeof id === 'string' && id.length === 32 && isNonZeroLowerHex(id, 0, 32);
}

/** True for a valid W3C `parent-id` / span id: exactly 16 lowercase hex characters, not all zeros. */
export function isValidSpanId(id: string): boolean {
  return typeof id === 'string' && id.length === 16 && isNonZeroLowerHex(id, 0, 16);
}
