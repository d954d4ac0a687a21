import { describe, expect, it } from '@jest/globals';
import { generateCorrelationId, isHeaderValue, isValidCorrelationId, readCorrelationId } from './correlation-id.js';

/** The documented rule, as a regular expression: the loop must agree with it on every string. */
const RULE = /^[A-Za-z0-9._:-]{1,128}$/;

describe('isValidCorrelationId', () => {
  it.each([
    ['b6a1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d', true],
    ['a', true],
    ['A.b_c:d-9', true],
    ['x'.repeat(128), true],
    ['x'.repeat(129), false],
    ['', false],
    ['has space', false],
    ['semi;colon', false],
    ['new\nline', false],
    ['quote"', false],
    ['ünïcode', false],
    ['emoji-😀', false],
    ['slash/', false],
    ['tab\t', false],
  ])('%j → %s', (id, valid) => {
    expect(isValidCorrelationId(id)).toBe(valid);
    expect(RULE.test(id)).toBe(valid);
  });

  it('agrees with the rule on every single character code up to 0x2000', () => {
    for (let c = 0; c < 0x2000; c++) {
      const id = `a${String.fromCharCode(c)}b`;
      expect([c, isValidCorrelationId(id)]).toEqual([c, RULE.test(id)]);
    }
  });

  it('agrees with the rule on random strings of every length around the limits', () => {
    const alphabet = 'Aa0._:- /;\u00e9\u0000~';
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 3000; i++) {
      const length = next() % 140;
      let id = '';
      for (let j = 0; j < length; j++) id += alphabet[next() % (next() % 2 === 0 ? 7 : alphabet.length)];
      expect([id, isValidCorrelationId(id)]).toEqual([id, RULE.test(id)]);
    }
  });

  it('rejects what is not a string instead of coercing it', () => {
    expect(isValidCorrelationId(123 as unknown as string)).toBe(false);
    expect(isValidCorrelationId(undefined as unknown as string)).toBe(false);
    expect(isValidCorrelationId(['abc'] as unknown as string)).toBe(false);
  });
});

describe('readCorrelationId', () => {
  it('takes the first valid value among the names, a repeated header by its first value', () => {
    const headers = { 'x-request-id': 'bad id', 'x-correlation-id': ['good-1', 'good-2'] };
    expect(readCorrelationId(headers, ['x-request-id', 'x-correlation-id'], isValidCorrelationId)).toBe('good-1');
    expect(readCorrelationId({}, ['x-request-id'], isValidCorrelationId)).toBeUndefined();
  });
});

describe('readCorrelationId: the first valid value wins, whatever the source', () => {
  const names = ['x-request-id', 'x-correlation-id'];
  it.each([
    ['a joined repeated header: its first valid part', { 'x-request-id': 'first-1, second-2' }, 'first-1'],
    ['a joined header whose first part is invalid', { 'x-request-id': 'bad value, second-2' }, 'second-2'],
    ['an array: every element in order', { 'x-request-id': ['bad value', 'good-3'] }, 'good-3'],
    ['an array element that is itself joined', { 'x-request-id': ['bad value, good-4'] }, 'good-4'],
    ['non-string array elements are skipped', { 'x-request-id': [1, null, 'good-5'] as unknown as string[] }, 'good-5'],
    ['nothing valid anywhere falls to the next header', { 'x-request-id': 'a b, c d', 'x-correlation-id': 'ok-6' }, 'ok-6'],
    ['empty parts are skipped', { 'x-request-id': ', ,ok-7' }, 'ok-7'],
    ['nothing valid at all', { 'x-request-id': ' , ' }, undefined],
  ])('%s', (_label, headers, expected) => {
    expect(readCorrelationId(headers, names, isValidCorrelationId)).toBe(expected);
  });

  it('a validator that accepts the whole joined value gets it whole', () => {
    expect(readCorrelationId({ 'x-request-id': 'a, b' }, names, () => true)).toBe('a, b');
  });
});

describe('generateCorrelationId (the default generator)', () => {
  it('makes time-ordered UUIDv7s that pass the default check and can be sent as a header', () => {
    const ids = Array.from({ length: 1000 }, () => generateCorrelationId());
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(isValidCorrelationId(id)).toBe(true);
      expect(isHeaderValue(id)).toBe(true);
    }
    expect([...ids].sort()).toEqual(ids);
  });
});

describe('isHeaderValue', () => {
  it('accepts what Node can send as a header value and nothing else', () => {
    expect(isHeaderValue('abc-1 \t\u00e9\u00ff')).toBe(true);
    for (const bad of ['a\nb', 'a\rb', '\u0000', '\u007f', '\u0100', '\u{1F600}']) expect(isHeaderValue(bad)).toBe(false);
  });
});

