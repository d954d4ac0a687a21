import { jest } from '@jest/globals';
import fc from 'fast-check';
import { isValidCorrelationId } from './correlation-id.js';
import { isValidSpanId, isValidTraceId, randomSpanId, randomTraceId, uuidV7 } from './ids.js';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const P = '00f067aa0ba902b7';

describe('isValidTraceId / isValidSpanId (TC-20 trace-id, parent-id)', () => {
  it.each([
    ['spec example', T, true],
    ['only the last digit non-zero', `${'0'.repeat(31)}1`, true],
    ['all zeros', '0'.repeat(32), false],
    ['uppercase', T.toUpperCase(), false],
    ['31 characters', T.slice(1), false],
    ['33 characters', `${T}0`, false],
    ['non-hex letter', `${T.slice(1)}g`, false],
    ['non-ASCII digit', `${T.slice(1)}\u0661`, false],
    ['empty', '', false],
  ])('trace-id: %s', (_name, id, valid) => expect(isValidTraceId(id)).toBe(valid));

  it.each([
    ['spec example', P, true],
    ['all zeros', '0'.repeat(16), false],
    ['uppercase', P.toUpperCase(), false],
    ['15 characters', P.slice(1), false],
    ['17 characters', `${P}0`, false],
    ['a trace-id', T, false],
  ])('span-id: %s', (_name, id, valid) => expect(isValidSpanId(id)).toBe(valid));

  it('is false for values of the wrong type', () => {
    for (const value of [undefined, null, 1, {}, [T]] as unknown[]) {
      expect(isValidTraceId(value as string)).toBe(false);
      expect(isValidSpanId(value as string)).toBe(false);
    }
  });
});

describe('randomTraceId / randomSpanId', () => {
  it('always returns valid ids (fast-check, also across pool refills)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 700 }), (n) => {
        for (let i = 0; i < n; i++) {
          const traceId = randomTraceId();
          const spanId = randomSpanId();
          if (!isValidTraceId(traceId) || !isValidSpanId(spanId)) return false;
        }
        return true;
      }),
      { numRuns: 20 },
    );
  });

  it('returns distinct ids', () => {
    const traceIds = new Set(Array.from({ length: 5000 }, () => randomTraceId()));
    const spanIds = new Set(Array.from({ length: 5000 }, () => randomSpanId()));
    expect(traceIds.size).toBe(5000);
    expect(spanIds.size).toBe(5000);
  });

  it('looks uniformly random: every hex digit appears in every position', () => {
    const seen = Array.from({ length: 32 }, () => new Set<string>());
    for (let i = 0; i < 2000; i++) [...randomTraceId()].forEach((c, j) => seen[j]?.add(c));
    for (const digits of seen) expect(digits.size).toBe(16);
  });
});

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The 48-bit millisecond timestamp of a UUIDv7. */
const msOf = (id: string): number => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
/** The 12-bit `rand_a` field (our counter) of a UUIDv7. */
const counterOf = (id: string): number => parseInt(id.slice(15, 18), 16);

describe('uuidV7 (RFC 9562)', () => {
  afterEach(() => jest.restoreAllMocks());

  it('has the RFC 9562 layout: 8-4-4-4-12 lowercase hex, version 7, variant 10, and passes the default check', () => {
    for (let i = 0; i < 3000; i++) {
      const id = uuidV7();
      expect(id).toMatch(UUID_V7);
      expect(isValidCorrelationId(id)).toBe(true);
      const bytes = Buffer.from(id.replace(/-/g, ''), 'hex');
      expect(bytes).toHaveLength(16);
      expect((bytes[6] as number) >> 4).toBe(7); // version
      expect((bytes[8] as number) >> 6).toBe(0b10); // variant
    }
  });

  it('carries the Unix time in milliseconds in its first 48 bits', () => {
    const before = Date.now();
    const id = uuidV7();
    const after = Date.now();
    // The id may run ahead of the clock by the counter rollovers of the test before, never behind.
    expect(msOf(id)).toBeGreaterThanOrEqual(before);
    expect(msOf(id)).toBeLessThanOrEqual(after + 10);
  });

  it('encodes a given time exactly (all 48 bits, above 2^32 too)', () => {
    jest.spyOn(Date, 'now').mockReturnValue(0xfedc_ba98_7654);
    expect(uuidV7().slice(0, 13)).toBe('fedcba98-7654');
  });

  it('is strictly increasing, as a string, across many ids (many per millisecond)', () => {
    const ids = Array.from({ length: 50_000 }, () => uuidV7());
    for (let i = 1; i < ids.length; i++) {
      if (!((ids[i] as string) > (ids[i - 1] as string))) throw new Error(`not increasing at ${i}: ${ids[i - 1]} then ${ids[i]}`);
    }
    expect(new Set(ids.map(msOf)).size).toBeLessThan(ids.length); // several ids shared a millisecond
  });

  it('is unique across many ids', () => {
    const ids = new Set(Array.from({ length: 100_000 }, () => uuidV7()));
    expect(ids.size).toBe(100_000);
  });

  it('starts each millisecond at a random counter below 2048 and counts up by one within it', () => {
    let ms = 0xfedc_ba98_7654 + 1_000;
    jest.spyOn(Date, 'now').mockImplementation(() => ms);
    const starts = new Set<number>();
    for (let tick = 0; tick < 200; tick++) {
      ms += 1;
      const first = uuidV7();
      const second = uuidV7();
      expect(msOf(first)).toBe(ms);
      expect(msOf(second)).toBe(ms);
      expect(counterOf(first)).toBeLessThan(2048);
      expect(counterOf(second)).toBe(counterOf(first) + 1);
      starts.add(counterOf(first));
    }
    expect(starts.size).toBeGreaterThan(150); // random starts, not a fixed one
  });

  it('takes the next millisecond when the counter runs out, and stays ordered', () => {
    const ms = 0xfedc_ba98_7654 + 2_000;
    jest.spyOn(Date, 'now').mockReturnValue(ms);
    const ids = Array.from({ length: 4200 }, () => uuidV7());
    expect(msOf(ids[0] as string)).toBe(ms);
    expect(msOf(ids.at(-1) as string)).toBe(ms + 1); // at most 4096 ids in one millisecond
    for (let i = 1; i < ids.length; i++) expect((ids[i] as string) > (ids[i - 1] as string)).toBe(true);
  });

  it('holds the last millisecond when the clock steps back a little, follows it after a step of more than 10 s', () => {
    let ms = 0xfedc_ba98_7654 + 3_000;
    jest.spyOn(Date, 'now').mockImplementation(() => ms);
    const a = uuidV7();
    ms -= 5_000; // the clock steps back 5 s: the ids keep the last millisecond
    const b = uuidV7();
    expect(msOf(b)).toBe(msOf(a));
    expect(b > a).toBe(true);
    ms -= 20_000; // 25 s behind: the ids follow the clock
    expect(msOf(uuidV7())).toBe(ms);
  });
});

describe('random ids never all zeros (random source mocked)', () => {
  it('draws again when the random bytes are all zero', async () => {
    let calls = 0;
    jest.unstable_mockModule('node:crypto', () => ({
      // First fill: all zeros (one whole pool); later fills: 0x01 bytes.
      randomFillSync: (buffer: Uint8Array) => {
        buffer.fill(calls++ === 0 ? 0 : 1);
        return buffer;
      },
    }));
    jest.resetModules(); // the static import above already loaded ids.js with the real source
    const ids = await import('./ids.js');
    // The first pool holds only zeros: every candidate is rejected until the refill.
    expect(ids.randomTraceId()).toBe('01'.repeat(16));
    expect(ids.randomSpanId()).toBe('01'.repeat(8));
    expect(calls).toBe(2);
  });
});
