import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';

/**
 * Random bytes are drawn from one pooled buffer, refilled with `crypto.randomFillSync` when used up,
 * so generating an id costs no system call and no allocation besides the returned string.
 */
const POOL_SIZE = 8192;
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let poolOffset = POOL_SIZE;

/** Refills the pool with fresh CSPRNG bytes (once every 8 KiB of ids). */
function refill(): void {
  randomFillSync(pool);
  poolOffset = 0;
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

/**
 * A new W3C `trace-id`: 32 lowercase hex characters (16 bytes), never all zeros. All 16 bytes are
 * drawn from a CSPRNG, so the `random-trace-id` flag (`FLAG_RANDOM`) may be set for it.
 */
export function randomTraceId(): string {
  for (;;) {
    if (poolOffset > POOL_SIZE - 16) refill();
    const at = poolOffset;
    poolOffset = at + 16;
    const p = pool;
    // The zero check is written out: one expression, no helper call (see uuidV7 on inlining).
    if ((p[at]! | p[at + 1]! | p[at + 2]! | p[at + 3]! | p[at + 4]! | p[at + 5]! | p[at + 6]! | p[at + 7]! |
      p[at + 8]! | p[at + 9]! | p[at + 10]! | p[at + 11]! | p[at + 12]! | p[at + 13]! | p[at + 14]! | p[at + 15]!) !== 0) {
      return hex8(at) + hex8(at + 8);
    }
  }
}

/** A new W3C `parent-id` / span id: 16 lowercase hex characters (8 bytes), never all zeros. */
export function randomSpanId(): string {
  for (;;) {
    if (poolOffset > POOL_SIZE - 8) refill();
    const at = poolOffset;
    poolOffset = at + 8;
    const p = pool;
    if ((p[at]! | p[at + 1]! | p[at + 2]! | p[at + 3]! | p[at + 4]! | p[at + 5]! | p[at + 6]! | p[at + 7]!) !== 0) return hex8(at);
  }
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

/**
 * UUIDv7 state (RFC 9562 §6.2 method 1, "fixed bit-length dedicated counter"): the millisecond
 * of the last id and the 12-bit counter in its `rand_a` field.
 */
let lastMs = -1;
let counter = 0;

/** A backward clock step larger than this (ms) is followed instead of being held back. */
const MAX_CLOCK_BACKSTEP_MS = 10_000;

/** The largest value of the 12-bit `rand_a` counter. */
const COUNTER_MAX = 0xfff;

/**
 * A new UUID version 7 (RFC 9562 §5.7), lowercase, `xxxxxxxx-xxxx-7xxx-[89ab]xxx-xxxxxxxxxxxx`:
 * 48 bits of Unix time in milliseconds, the version `7`, a 12-bit counter (`rand_a`), the variant
 * `10` and 62 random bits (`rand_b`) from the pooled CSPRNG bytes.
 *
 * Monotonic within the process (RFC 9562 §6.2 method 1): on a new millisecond the counter starts at
 * a random value below 2048 (its top bit is a fixed zero, the RFC's rollover guard, so at least 2048
 * ids fit in a millisecond); within the same millisecond it counts up by one. When it would pass
 * 4095 the id takes the next millisecond (the timestamp runs ahead of the clock until the clock
 * catches up). A clock that steps back is held at the last millisecond, unless it steps back more
 * than 10 seconds, where the ids follow the clock again (ordering across that step is given up
 * rather than stamping every id with a wrong time). So every id compares greater, as a string, than
 * the one before it in this process, barring such a step; ids of different processes are ordered
 * by millisecond only.
 */
export function uuidV7(): string {
  // The pool is read inline here and in the id functions above: through a shared `reserve()` helper
  // each id cost about 2,000 instructions more on Node 24 (bench/outbound-instructions.mjs).
  if (poolOffset > POOL_SIZE - 16) refill();
  const at = poolOffset;
  poolOffset = at + 16;
  const p = pool;
  // 11 random bits for a fresh counter (bytes 6-7 are overwritten below).
  const seed = ((p[at + 6] as number) & 0x07) * 256 + (p[at + 7] as number);
  let ms = Date.now();
  if (ms <= lastMs && ms >= lastMs - MAX_CLOCK_BACKSTEP_MS) {
    if (counter < COUNTER_MAX) {
      counter++;
      ms = lastMs;
    } else {
      ms = lastMs + 1;
      counter = seed;
    }
  } else {
    counter = seed;
  }
  lastMs = ms;
  const hi = Math.floor(ms / 0x100000000); // the top 16 of the 48 bits
  const lo = ms >>> 0; // the low 32 bits
  p[at] = hi >>> 8;
  p[at + 1] = hi & 0xff;
  p[at + 2] = lo >>> 24;
  p[at + 3] = (lo >>> 16) & 0xff;
  p[at + 4] = (lo >>> 8) & 0xff;
  p[at + 5] = lo & 0xff;
  p[at + 6] = 0x70 | (counter >>> 8);
  p[at + 7] = counter & 0xff;
  p[at + 8] = 0x80 | ((p[at + 8] as number) & 0x3f);
  return uuidString(at);
}

/** The 16 pooled bytes at `at` in the UUID text form (8-4-4-4-12 lowercase hex digits). */
function uuidString(at: number): string {
  const p = pool;
  return String.fromCharCode(
    HEX[p[at] >> 4], HEX[p[at] & 15],
    HEX[p[at + 1] >> 4], HEX[p[at + 1] & 15],
    HEX[p[at + 2] >> 4], HEX[p[at + 2] & 15],
    HEX[p[at + 3] >> 4], HEX[p[at + 3] & 15],
    0x2d,
    HEX[p[at + 4] >> 4], HEX[p[at + 4] & 15],
    HEX[p[at + 5] >> 4], HEX[p[at + 5] & 15],
    0x2d,
    HEX[p[at + 6] >> 4], HEX[p[at + 6] & 15],
    HEX[p[at + 7] >> 4], HEX[p[at + 7] & 15],
    0x2d,
    HEX[p[at + 8] >> 4], HEX[p[at + 8] & 15],
    HEX[p[at + 9] >> 4], HEX[p[at + 9] & 15],
    0x2d,
    HEX[p[at + 10] >> 4], HEX[p[at + 10] & 15],
    HEX[p[at + 11] >> 4], HEX[p[at + 11] & 15],
    HEX[p[at + 12] >> 4], HEX[p[at + 12] & 15],
    HEX[p[at + 13] >> 4], HEX[p[at + 13] & 15],
    HEX[p[at + 14] >> 4], HEX[p[at + 14] & 15],
    HEX[p[at + 15] >> 4], HEX[p[at + 15] & 15],
  );
}

/** True for a valid W3C `trace-id`: exactly 32 lowercase hex characters, not all zeros. */
export function isValidTraceId(id: string): boolean {
  return typeof id === 'string' && id.length === 32 && isNonZeroLowerHex(id, 0, 32);
}

/** True for a valid W3C `parent-id` / span id: exactly 16 lowercase hex characters, not all zeros. */
export function isValidSpanId(id: string): boolean {
  return typeof id === 'string' && id.length === 16 && isNonZeroLowerHex(id, 0, 16);
}
