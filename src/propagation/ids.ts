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

/** Returns `size` random bytes as lowercase hex, never all zeros. */
function randomHex(size: number): string {
  for (;;) {
    const start = reserve(size);
    if (!allZero(start, size)) return pool.toString('hex', start, start + size);
  }
}

/**
 * A new W3C `trace-id`: 32 lowercase hex characters (16 bytes), never all zeros. All 16 bytes are
 * drawn from a CSPRNG, so the `random-trace-id` flag (`FLAG_RANDOM`) may be set for it.
 */
export function randomTraceId(): string {
  return randomHex(16);
}

/** A new W3C `parent-id` / span id: 16 lowercase hex characters (8 bytes), never all zeros. */
export function randomSpanId(): string {
  return randomHex(8);
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
