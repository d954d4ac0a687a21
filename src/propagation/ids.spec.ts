import { jest } from '@jest/globals';
import fc from 'fast-check';
import { isValidSpanId, isValidTraceId, randomSpanId, randomTraceId } from './ids.js';

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
