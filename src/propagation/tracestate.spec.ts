import fc from 'fast-check';
import { parseTraceparent } from './traceparent.js';
import {
  formatTracestate,
  isValidTracestateKey,
  isValidTracestateValue,
  parseTracestate,
  updateTracestate,
  type TraceStateEntries,
} from './tracestate.js';

const VALID_TP = '00-12345678901234567890123456789012-1234567890123456-00';

/**
 * The processing model around the parser: `tracestate` is only parsed after a valid `traceparent`
 * (TC-20: "If the vendor failed to parse traceparent, it MUST NOT attempt to parse tracestate";
 * TC-30: "If a tracestate header is received without an accompanying traceparent header, it is
 * invalid and MUST be discarded"). Returns the outgoing `tracestate` value ('' = not sent).
 */
function forwarded(traceparent: string | undefined, tracestate: string | readonly string[] | undefined): string {
  if (parseTraceparent(traceparent) === undefined) return '';
  const entries = parseTracestate(tracestate);
  return entries === undefined ? '' : formatTracestate(entries);
}

const members = (from: number, to: number): string =>
  Array.from({ length: to - from + 1 }, (_, i) => {
    const n = String(from + i).padStart(2, '0');
    return `bar${n}=${n}`;
  }).join(',');

const KEY_ALL = 'abcdefghijklmnopqrstuvwxyz0123456789_-*/';
const KEY_ALL_AT = `${KEY_ALL}@a-z0-9_-*/`;
const VALUE_ALL = Array.from({ length: 0x7e - 0x20 + 1 }, (_, i) => String.fromCharCode(0x20 + i))
  .filter((c) => c !== ',' && c !== '=')
  .join('');

type Row = {
  /** The spec rule (or VECTORS.md row) the case checks. */
  rule: string;
  input: string | readonly string[] | undefined;
  /** `undefined` = the whole header is dropped. */
  expected: [string, string][] | undefined;
  /** Expected outgoing value when it differs from the entries joined. */
  out?: string;
  /** Traceparent sent along (default: a valid one); `null` = none sent. */
  traceparent?: string | null;
};

const rows: Row[] = [
  { rule: 'V2.1 TC-20 list: order kept', input: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE', expected: [['rojo', '00f067aa0ba902b7'], ['congo', 't61rcWkgMzE']] },
  { rule: 'V2.2 RFC 9110 §5.3: fields combined in order', input: ['foo=1,bar=2', 'rojo=1,congo=2', 'baz=3'], expected: [['foo', '1'], ['bar', '2'], ['rojo', '1'], ['congo', '2'], ['baz', '3']] },
  { rule: 'V2.3 TC-30 tracestate without traceparent is discarded', input: 'foo=1', traceparent: null, expected: [['foo', '1']], out: '' },
  { rule: 'V2.4 TC-20 invalid traceparent: tracestate MUST NOT be parsed', input: 'foo=1', traceparent: VALID_TP.replace(/^00/, 'ff'), expected: [['foo', '1']], out: '' },
  { rule: 'V2.5 TC-20 empty header accepted (and not sent)', input: '', expected: [], out: '' },
  { rule: 'absent header', input: undefined, expected: [], out: '' },
  { rule: 'no header field (empty array)', input: [], expected: [], out: '' },
  { rule: 'V2.6 TC-20 empty field after a non-empty one', input: ['foo=1', ''], expected: [['foo', '1']] },
  { rule: 'V2.6 TC-20 empty field before a non-empty one', input: ['', 'foo=1'], expected: [['foo', '1']] },
  { rule: 'V2.7 TC-20 whitespace-only list member allowed', input: '   ', expected: [], out: '' },
  { rule: 'V2.7 TC-20 empty list members allowed and skipped', input: ',,foo=1,,', expected: [['foo', '1']] },
  { rule: 'TC-20 list: whitespace-only members between members', input: 'foo=1, ,\t,bar=2', expected: [['foo', '1'], ['bar', '2']] },
  { rule: 'V2.8 TC-20 OWS around members (spaces and tabs)', input: 'foo=1 \t , \t bar=2, \t baz=3', expected: [['foo', '1'], ['bar', '2'], ['baz', '3']] },
  { rule: 'V2.8 TC-20 OWS around members (tabs first)', input: 'foo=1\t \t,\t \tbar=2,\t \tbaz=3', expected: [['foo', '1'], ['bar', '2'], ['baz', '3']] },
  { rule: 'V2.9 TC-20 value: trailing space is OWS', input: 'foo=1 ', expected: [['foo', '1']] },
  { rule: 'V2.9 TC-20 value: trailing tab is OWS', input: 'foo=1\t', expected: [['foo', '1']] },
  { rule: 'TC-20 OWS before the first member (space)', input: ' foo=1', expected: [['foo', '1']] },
  { rule: 'TC-20 OWS before the first member (tab)', input: '\tfoo=1', expected: [['foo', '1']] },
  { rule: 'TC-20 OWS on both sides', input: '\t foo=1 \t', expected: [['foo', '1']] },
  { rule: 'V2.10 TC-20 value: leading spaces MUST be preserved', input: 'foo= 1', expected: [['foo', ' 1']] },
  { rule: 'V2.11 TC-20 value: inner space is legal', input: 'foo=a b', expected: [['foo', 'a b']] },
  { rule: 'V2.12 TC-20 value: tab not allowed inside', input: 'foo=a\tb', expected: undefined },
  { rule: 'TC-20 value: tab right after "=" is not OWS', input: 'foo=\t1', expected: undefined },
  { rule: 'TC-20 value: newline not allowed', input: 'foo=1\n', expected: undefined },
  { rule: 'TC-20 value: DEL (0x7f) not allowed', input: 'foo=a\u007f', expected: undefined },
  { rule: 'V2.13 TC-20 key: space before "="', input: 'foo =1', expected: undefined },
  { rule: 'V2.13 TC-20 key: uppercase', input: 'FOO=1', expected: undefined },
  { rule: 'V2.13 TC-20 key: "." not a keychar', input: 'foo.bar=1', expected: undefined },
  { rule: 'TC-20 key: invalid key drops valid members too', input: 'bar=2,Foo=1', expected: undefined },
  { rule: 'V2.14 TC-20 Level 2 key: "@" at the end', input: 'foo@=1,bar=2', expected: [['foo@', '1'], ['bar', '2']] },
  { rule: 'V2.14 TC-20 Level 2 key: "@@"', input: 'foo@@bar=1,bar=2', expected: [['foo@@bar', '1'], ['bar', '2']] },
  { rule: 'V2.14 TC-20 Level 2 key: two "@"', input: 'foo@bar@baz=1,bar=2', expected: [['foo@bar@baz', '1'], ['bar', '2']] },
  { rule: 'V2.15 TC-20 key MUST begin with lcalpha or DIGIT ("@")', input: '@foo=1,bar=2', expected: undefined },
  { rule: 'TC-20 key MUST begin with lcalpha or DIGIT ("_")', input: '_foo=1', expected: undefined },
  { rule: 'TC-20 key MUST begin with lcalpha or DIGIT ("-")', input: '-foo=1', expected: undefined },
  { rule: 'V2.16 TC-20 Level 2 key: leading digit', input: '1foo=1', expected: [['1foo', '1']] },
  { rule: 'V2.16 TC-20 key: "/", "*", "_", "-" allowed', input: 'a/b*c_d-e=1', expected: [['a/b*c_d-e', '1']] },
  { rule: 'V2.17 TC-20 key of 256 characters', input: ['foo=1', `${'z'.repeat(256)}=1`], expected: [['foo', '1'], ['z'.repeat(256), '1']] },
  { rule: 'V2.17 TC-20 key of 257 characters drops everything', input: ['foo=1', `${'z'.repeat(257)}=1`], expected: undefined },
  { rule: 'V2.18 TC-20 Level 2 key: 241 + "@" + 14', input: ['foo=1', `${'t'.repeat(241)}@${'v'.repeat(14)}=1`], expected: [['foo', '1'], [`${'t'.repeat(241)}@${'v'.repeat(14)}`, '1']] },
  { rule: 'V2.18 TC-20 Level 2 key: 242 + "@v"', input: ['foo=1', `${'t'.repeat(242)}@v=1`], expected: [['foo', '1'], [`${'t'.repeat(242)}@v`, '1']] },
  { rule: 'V2.18 TC-20 Level 2 key: "t@" + 15', input: ['foo=1', `t@${'v'.repeat(15)}=1`], expected: [['foo', '1'], [`t@${'v'.repeat(15)}`, '1']] },
  { rule: 'TC-20 Level 2 key: 256 characters with "@"', input: `${'t'.repeat(250)}@${'v'.repeat(5)}=1`, expected: [[`${'t'.repeat(250)}@${'v'.repeat(5)}`, '1']] },
  { rule: 'V2.19 TC-20 value of 256 characters', input: `foo=${'a'.repeat(256)}`, expected: [['foo', 'a'.repeat(256)]] },
  { rule: 'V2.19 TC-20 value of 257 characters drops everything', input: `bar=1,foo=${'a'.repeat(257)}`, expected: undefined },
  { rule: 'TC-20 value: 256 characters counting a leading space', input: `foo= ${'a'.repeat(255)}`, expected: [['foo', ` ${'a'.repeat(255)}`]] },
  { rule: 'TC-20 value: 257 characters counting a leading space', input: `foo= ${'a'.repeat(256)}`, expected: undefined },
  { rule: 'V2.20 TC-20 value: "=" not allowed', input: 'foo=bar=baz', expected: undefined },
  { rule: 'TC-20 value: trailing "=" not allowed', input: 'foo=1=', expected: undefined },
  { rule: 'V2.21 TC-20 value: empty value', input: 'foo=,bar=3', expected: undefined },
  { rule: 'V2.21 TC-20 value: spaces only (trailing OWS)', input: 'foo= ', expected: undefined },
  { rule: 'TC-20 list-member: no "="', input: 'foo=1,bar', expected: undefined },
  { rule: 'TC-20 list-member: empty key', input: '=1', expected: undefined },
  { rule: 'V2.22 TC-20 value: non-ASCII', input: 'foo=\u00e9', expected: undefined },
  { rule: 'V2.23 TC-20 32 members over 4 fields', input: [members(1, 10), members(11, 20), members(21, 30), members(31, 32)], expected: Array.from({ length: 32 }, (_, i) => { const n = String(i + 1).padStart(2, '0'); return [`bar${n}`, n] as [string, string]; }) },
  { rule: 'V2.24 TC-20 33 members: dropped entirely', input: [members(1, 10), members(11, 20), members(21, 30), members(31, 33)], expected: undefined },
  { rule: 'TC-20 empty members do not count towards 32', input: `${members(1, 32)},,, ,`, expected: Array.from({ length: 32 }, (_, i) => { const n = String(i + 1).padStart(2, '0'); return [`bar${n}`, n] as [string, string]; }) },
  { rule: 'V2.25 TC-20 duplicate keys: first kept, never emptied', input: 'foo=1,foo=2', expected: [['foo', '1']] },
  { rule: 'V2.25 TC-20 duplicate keys over two fields', input: ['foo=1', 'foo=2'], expected: [['foo', '1']] },
  { rule: 'V2.25 TC-20 identical duplicate', input: 'foo=1,foo=1', expected: [['foo', '1']] },
  { rule: 'TC-20 duplicate keys: other members kept in order', input: 'a=1,foo=1,b=2,foo=3,c=4', expected: [['a', '1'], ['foo', '1'], ['b', '2'], ['c', '4']] },
  { rule: 'V2.26 TC-20 all allowed key and value characters', input: `${KEY_ALL}=${VALUE_ALL}`, expected: [[KEY_ALL, VALUE_ALL]] },
  { rule: 'V2.26 TC-20 all allowed characters, key with "@"', input: `${KEY_ALL_AT}=${VALUE_ALL}`, expected: [[KEY_ALL_AT, VALUE_ALL]] },
  { rule: 'TC-20 spec example, multiple tracing systems', input: 'congo=ucfJifl5GOE,rojo=00f067aa0ba902b7', expected: [['congo', 'ucfJifl5GOE'], ['rojo', '00f067aa0ba902b7']] },
];

describe('parseTracestate: table (VECTORS.md §2 + TC-20)', () => {
  it.each(rows)('$rule', ({ input, expected, out, traceparent }) => {
    const parsed = parseTracestate(input);
    expect(parsed).toEqual(expected);
    const sent = forwarded(traceparent === null ? undefined : (traceparent ?? VALID_TP), input);
    expect(sent).toBe(out ?? (expected ?? []).map(([k, v]) => `${k}=${v}`).join(','));
  });

  it('never throws on values of the wrong type (JavaScript callers)', () => {
    const odd: unknown[] = [null, 0, {}, [1], ['foo=1', null], true];
    for (const value of odd) expect(parseTracestate(value as string)).toBeUndefined();
  });
});

describe('formatTracestate', () => {
  const long = (key: string, size: number): [string, string] => [key, 'x'.repeat(size - key.length - 1)];

  it('joins entries with "," and no OWS', () => {
    expect(formatTracestate([['a', '1'], ['b', ' 2']])).toBe('a=1,b= 2');
  });

  it('returns "" for no entries (TC-20: SHOULD avoid sending empty tracestate)', () => {
    expect(formatTracestate([])).toBe('');
  });

  it('keeps a list of exactly 512 characters (TC-20 limits: SHOULD propagate at least 512)', () => {
    const entries = [long('a', 255), long('b', 256)];
    expect(formatTracestate(entries)).toHaveLength(512);
  });

  it('V2.28 TC-20 truncation: entries > 128 characters removed first, right-most first, until it fits', () => {
    const entries = [long('a', 100), long('big1', 200), long('b', 100), long('big2', 200), long('c', 100)];
    // 700 + 4 commas = 704 > 512: removing big2 gives 503, which fits; big1 stays.
    const out = formatTracestate(entries);
    expect(out.split(',').map((m) => m.split('=')[0])).toEqual(['a', 'big1', 'b', 'c']);
    expect(out.length).toBeLessThanOrEqual(512);
  });

  it('V2.28 TC-20 truncation: then whole entries from the right', () => {
    const entries = Array.from({ length: 10 }, (_, i) => long(`k${i}`, 100));
    const out = formatTracestate(entries);
    expect(out.split(',').map((m) => m.split('=')[0])).toEqual(['k0', 'k1', 'k2', 'k3', 'k4']);
    expect(out).toHaveLength(504);
  });

  it('V2.28 TC-20 truncation: all long entries go before any short one', () => {
    const entries = [long('big0', 300), long('a', 100), long('big1', 300), long('b', 100)];
    expect(formatTracestate(entries).split(',').map((m) => m.split('=')[0])).toEqual(['a', 'b']);
  });

  it('honours a custom maxLength and never cuts inside an entry', () => {
    const entries: TraceStateEntries = [['aa', '1'], ['bb', '2'], ['cc', '3']];
    expect(formatTracestate(entries, 9)).toBe('aa=1,bb=2');
    expect(formatTracestate(entries, 8)).toBe('aa=1');
    expect(formatTracestate(entries, 3)).toBe('');
    expect(formatTracestate(entries, Infinity)).toBe('aa=1,bb=2,cc=3');
  });

  it('leaves out invalid entries, later duplicates and entries past the 32nd', () => {
    const entries: [string, string][] = [
      ['ok', '1'],
      ['Bad', '1'],
      ['bad', 'a,b'],
      ['bad2', 'trailing '],
      ['ok', '2'],
      ...Array.from({ length: 40 }, (_, i): [string, string] => [`k${i}`, 'v']),
    ];
    const out = formatTracestate(entries, Infinity);
    const keys = out.split(',').map((m) => m.split('=')[0]);
    expect(keys).toHaveLength(32);
    expect(keys.slice(0, 2)).toEqual(['ok', 'k0']);
    expect(out.startsWith('ok=1,')).toBe(true);
  });
});

describe('updateTracestate (TC-20 Mutating the tracestate Field)', () => {
  const received: TraceStateEntries = [['rojo', '00f067aa0ba902b7'], ['congo', 't61rcWkgMzE']];

  it('adds a new key/value pair to the left', () => {
    expect(updateTracestate(received, 'nest', 'a1')).toEqual([['nest', 'a1'], ...received]);
  });

  it('updates an existing key and moves it to the left, other order kept (spec example)', () => {
    const next = updateTracestate(received, 'congo', 'ucfJifl5GOE');
    expect(formatTracestate(next)).toBe('congo=ucfJifl5GOE,rojo=00f067aa0ba902b7');
  });

  it('leaves no duplicate of the key, even when the received list had some', () => {
    const dupes: TraceStateEntries = [['a', '1'], ['k', '1'], ['b', '2'], ['k', '2']];
    expect(updateTracestate(dupes, 'k', '3')).toEqual([['k', '3'], ['a', '1'], ['b', '2']]);
  });

  it('drops the right-most member when adding would exceed 32 members', () => {
    const full = parseTracestate(members(1, 32)) as TraceStateEntries;
    const next = updateTracestate(full, 'nest', 'x');
    expect(next).toHaveLength(32);
    expect(next[0]).toEqual(['nest', 'x']);
    expect(next[31]).toEqual(['bar31', '31']);
  });

  it('does not modify its input', () => {
    const input: [string, string][] = [['a', '1']];
    updateTracestate(input, 'b', '2');
    expect(input).toEqual([['a', '1']]);
  });

  it.each([
    ['uppercase key', 'Nest', 'v'],
    ['empty key', '', 'v'],
    ['key starting with "@"', '@nest', 'v'],
    ['key of 257 characters', 'k'.repeat(257), 'v'],
    ['empty value', 'nest', ''],
    ['value with ","', 'nest', 'a,b'],
    ['value with "="', 'nest', 'a=b'],
    ['value with trailing space', 'nest', 'a '],
    ['value with tab', 'nest', 'a\tb'],
    ['value of 257 characters', 'nest', 'v'.repeat(257)],
    ['non-ASCII value', 'nest', '\u00e9'],
  ])('throws a TypeError on an invalid key or value (%s)', (_name, key, value) => {
    expect(() => updateTracestate(received, key, value)).toThrow(TypeError);
  });
});

describe('isValidTracestateKey / isValidTracestateValue', () => {
  it.each([
    ['foo', true],
    ['1foo', true],
    ['foo@bar', true],
    ['foo@', true],
    ['k'.repeat(256), true],
    ['k'.repeat(257), false],
    ['', false],
    ['@foo', false],
    ['Foo', false],
    ['foo.bar', false],
  ])('key %j -> %s', (key, valid) => expect(isValidTracestateKey(key)).toBe(valid));

  it.each([
    ['1', true],
    [' 1', true],
    ['a b', true],
    ['v'.repeat(256), true],
    ['v'.repeat(257), false],
    ['', false],
    [' ', false],
    ['1 ', false],
    ['a,b', false],
    ['a=b', false],
  ])('value %j -> %s', (value, valid) => expect(isValidTracestateValue(value)).toBe(valid));
});

const keyArb = fc.oneof(
  fc.stringMatching(/^[a-z0-9][a-z0-9_*/@-]{0,12}$/),
  fc.stringMatching(/^[a-z0-9][a-z0-9_*/@-]{0,255}$/),
);
const valueArb = fc.oneof(
  fc.stringMatching(/^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,12}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/),
  fc.stringMatching(/^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/),
);
const entriesArb = fc.uniqueArray(fc.tuple(keyArb, valueArb), { selector: (e) => e[0], maxLength: 32 });
const owsArb = fc.stringMatching(/^[ \t]{0,2}$/);
/** Characters that make near-valid tracestate headers likely. */
const tsChar = fc.constantFrom('a', 'z', '0', '9', '=', ',', ' ', '\t', '@', '/', '*', '_', '-', 'A', '.', '\u00e9', '~');

describe('tracestate properties (fast-check)', () => {
  it('round-trips valid entries: parse(format(e)) equals e (no length cap)', () => {
    fc.assert(
      fc.property(entriesArb, (entries) => {
        expect(parseTracestate(formatTracestate(entries, Infinity))).toEqual(entries);
      }),
      { numRuns: 200 },
    );
  });

  it('parses any OWS / empty-member / field-split rendering of valid entries back to them', () => {
    fc.assert(
      fc.property(entriesArb, fc.array(fc.tuple(owsArb, owsArb, fc.boolean(), fc.boolean())), (entries, seps) => {
        const fields: string[] = [];
        let current = '';
        entries.forEach(([k, v], i) => {
          const [before, after, emptyMember, split] = seps[i % Math.max(1, seps.length)] ?? ['', '', false, false];
          current += `${before}${k}=${v}${after}${emptyMember ? ', ,' : ''}`;
          if (split) {
            fields.push(current);
            current = '';
          } else {
            current += ',';
          }
        });
        fields.push(current);
        expect(parseTracestate(fields)).toEqual(entries);
        expect(parseTracestate(fields.join(', '))).toEqual(entries);
      }),
      { numRuns: 200 },
    );
  });

  it('with the default cap, format gives at most 512 characters of whole entries, in order', () => {
    fc.assert(
      fc.property(entriesArb, (entries) => {
        const out = formatTracestate(entries);
        expect(out.length).toBeLessThanOrEqual(512);
        const back = parseTracestate(out) as TraceStateEntries;
        const remaining = entries.filter((e) => back.some((b) => b[0] === e[0]));
        expect(back).toEqual(remaining);
        if (formatTracestate(entries, Infinity).length <= 512) expect(back).toEqual(entries);
      }),
      { numRuns: 200 },
    );
  });

  it('never throws; what it accepts is valid, unique, at most 32 entries, and formats to a header that parses back', () => {
    const input = fc.oneof(
      fc.string(),
      fc.string({ unit: tsChar, maxLength: 60 }),
      fc.array(fc.string({ unit: tsChar, maxLength: 30 }), { maxLength: 4 }),
    );
    fc.assert(
      fc.property(input, (value) => {
        const parsed = parseTracestate(value);
        if (parsed === undefined) return;
        expect(parsed.length).toBeLessThanOrEqual(32);
        expect(new Set(parsed.map((e) => e[0])).size).toBe(parsed.length);
        for (const [k, v] of parsed) {
          expect(isValidTracestateKey(k)).toBe(true);
          expect(isValidTracestateValue(v)).toBe(true);
        }
        expect(parseTracestate(formatTracestate(parsed, Infinity))).toEqual(parsed);
      }),
      { numRuns: 500 },
    );
  });

  it('updateTracestate always yields a valid list with the key first and once', () => {
    fc.assert(
      fc.property(entriesArb, keyArb, valueArb, (entries, key, value) => {
        const next = updateTracestate(entries, key, value);
        expect(next[0]).toEqual([key, value]);
        expect(next.filter((e) => e[0] === key)).toHaveLength(1);
        expect(next.length).toBeLessThanOrEqual(32);
        expect(parseTracestate(formatTracestate(next, Infinity))).toEqual(next);
      }),
      { numRuns: 200 },
    );
  });
});
