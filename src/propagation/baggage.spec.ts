import fc from 'fast-check';
import type { BaggageMember } from '../interfaces/trace-info.interface.js';
import { formatBaggage, isCanonicalBaggage, parseBaggage, parseBaggageOnce, parseBaggageProperties } from './baggage.js';

type Row = {
  /** The spec rule (or VECTORS.md row) the case checks. */
  rule: string;
  input: string | readonly string[] | undefined;
  expected: BaggageMember[];
};

const e = (key: string, value: string, properties?: string): BaggageMember =>
  properties === undefined ? { key, value } : { key, value, properties };

const rows: Row[] = [
  { rule: 'V3.1 BG example: percent-encoded space', input: 'userId=alice,serverNode=DF%2028,isProduction=false', expected: [e('userId', 'alice'), e('serverNode', 'DF 28'), e('isProduction', 'false')] },
  { rule: 'V3.2 BG value: UTF-8 percent-decoding', input: 'userId=Am%C3%A9lie', expected: [e('userId', 'Am\u00e9lie')] },
  { rule: 'V3.3 BG multiple headers are combined', input: ['userId=alice', 'serverNode=DF%2028,isProduction=false'], expected: [e('userId', 'alice'), e('serverNode', 'DF 28'), e('isProduction', 'false')] },
  { rule: 'V3.4 BG OWS around keys, "=" and values', input: ['userId =   alice', 'serverNode = DF%2028, isProduction = false'], expected: [e('userId', 'alice'), e('serverNode', 'DF 28'), e('isProduction', 'false')] },
  { rule: 'V3.5 BG properties: key-only and key=value, kept raw', input: 'key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue', expected: [e('key1', 'value1', 'property1;property2'), e('key2', 'value2'), e('key3', 'value3', 'propertyKey=propertyValue')] },
  { rule: 'V3.6 BG value MAY contain "="', input: 'SomeKey=SomeValue=equals', expected: [e('SomeKey', 'SomeValue=equals')] },
  { rule: 'V3.7 BG percent-decoding of reserved characters', input: 'SomeKey=%09%20%22%27%3B%3Dasdf%21%40%23%24%25%5E%26%2A%28%29', expected: [e('SomeKey', '\t "\';=asdf!@#$%^&*()')] },
  { rule: 'V3.8 BG percent-encoding is RFC 3986: "+" is not a space', input: 'k=a+b', expected: [e('k', 'a+b')] },
  { rule: 'V3.9 BG invalid UTF-8 MUST become U+FFFD', input: 'k=%FF', expected: [e('k', '\ufffd')] },
  { rule: 'BG invalid UTF-8: truncated sequence becomes U+FFFD', input: 'k=a%E2%82b', expected: [e('k', 'a\ufffdb')] },
  { rule: 'V3.10 BG value = *baggage-octet: empty value is valid', input: 'k=', expected: [e('k', '')] },
  { rule: 'V3.11 BG key is a token: empty key', input: '=v,ok=1', expected: [e('ok', '1')] },
  { rule: 'V3.11 BG key is a token: space inside', input: 'k v=1,ok=1', expected: [e('ok', '1')] },
  { rule: 'V3.11 BG baggage-octet excludes DQUOTE', input: 'k="q",ok=1', expected: [e('ok', '1')] },
  { rule: 'V3.11 BG baggage-octet is ASCII only', input: 'k=\u00e9,ok=1', expected: [e('ok', '1')] },
  { rule: 'V3.11 BG baggage-octet excludes backslash', input: 'k=a\\b,ok=1', expected: [e('ok', '1')] },
  { rule: 'BG baggage-octet excludes inner whitespace', input: 'k=a b,ok=1', expected: [e('ok', '1')] },
  { rule: 'BG baggage-octet excludes control characters', input: 'k=a\u0000,ok=1', expected: [e('ok', '1')] },
  { rule: 'BG list-member needs "="', input: 'novalue,ok=1', expected: [e('ok', '1')] },
  { rule: 'V3.12 lenient: empty members skipped', input: 'a=1,,b=2', expected: [e('a', '1'), e('b', '2')] },
  { rule: 'lenient: whitespace-only members and empty fields skipped', input: ['', ' , a=1 ,\t', ''], expected: [e('a', '1')] },
  { rule: 'V3.13 BG duplicates kept in order', input: 'k=v1,k=v2', expected: [e('k', 'v1'), e('k', 'v2')] },
  { rule: 'V3.14 property value percent-encoded (kept raw here)', input: 'k=v;p=%E2%82%AC', expected: [e('k', 'v', 'p=%E2%82%AC')] },
  { rule: 'V3.15 key-only property that looks encoded stays raw', input: 'k=v;ValueProp%20%3D%20PropVal', expected: [e('k', 'v', 'ValueProp%20%3D%20PropVal')] },
  { rule: 'V3.16 malformed escape kept literally (%zz)', input: 'k=%zz', expected: [e('k', '%zz')] },
  { rule: 'V3.16 malformed escape kept literally (trailing %)', input: 'k=100%', expected: [e('k', '100%')] },
  { rule: 'malformed escape kept literally (one hex digit at end)', input: 'k=%4', expected: [e('k', '%4')] },
  { rule: 'RFC 3986 §2.1: lowercase hex digits decode too', input: 'k=%c3%a9', expected: [e('k', '\u00e9')] },
  { rule: 'decoding is done once: %2541 is "%41"', input: 'k=%2541', expected: [e('k', '%41')] },
  { rule: 'V3.20 BG keys are case-sensitive', input: 'Key=1,key=2', expected: [e('Key', '1'), e('key', '2')] },
  { rule: 'BG key: every tchar allowed', input: "!#$%&'*+-.^_`|~09AZaz=1", expected: [e("!#$%&'*+-.^_`|~09AZaz", '1')] },
  { rule: 'BG key: "/" is not a tchar', input: 'a/b=1,ok=1', expected: [e('ok', '1')] },
  { rule: 'no prototype pollution: __proto__ is an ordinary key', input: '__proto__=x,constructor=y', expected: [e('__proto__', 'x'), e('constructor', 'y')] },
  { rule: 'BG property OWS trimmed at the ends, raw inside', input: 'k = v ; p1 ; p2 = 2 ', expected: [e('k', 'v', 'p1 ; p2 = 2')] },
  { rule: 'BG property: empty property (trailing ";") is malformed', input: 'k=v;,ok=1', expected: [e('ok', '1')] },
  { rule: 'BG property: empty property between ";;" is malformed', input: 'k=v;;p,ok=1', expected: [e('ok', '1')] },
  { rule: 'BG property: key must be a token', input: 'k=v;p q,ok=1', expected: [e('ok', '1')] },
  { rule: 'BG property value = *baggage-octet (may be empty)', input: 'k=v;p=', expected: [e('k', 'v', 'p=')] },
  { rule: 'BG property value may contain "="', input: 'k=v;p=a=b', expected: [e('k', 'v', 'p=a=b')] },
  { rule: 'BG ";" ends the value: following text is a property', input: 'k=a;b', expected: [e('k', 'a', 'b')] },
  { rule: 'absent header', input: undefined, expected: [] },
  { rule: 'empty header', input: '', expected: [] },
];

describe('parseBaggage: table (VECTORS.md §3 + BG HTTP_HEADER_FORMAT)', () => {
  it.each(rows)('$rule', ({ input, expected }) => {
    expect(parseBaggage(input)).toEqual(expected);
  });

  it('never pollutes Object.prototype', () => {
    const parsed = parseBaggage('__proto__=polluted,constructor=x,prototype=y');
    expect(parsed).toHaveLength(3);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.getPrototypeOf(parsed[0])).toBe(Object.prototype);
    expect(Object.keys(parsed[0] as object)).toEqual(['key', 'value']);
  });

  it('never throws on values of the wrong type (JavaScript callers)', () => {
    const odd: unknown[] = [null, 0, {}, [1, null], true];
    for (const value of odd) expect(parseBaggage(value as string)).toEqual([]);
  });
});

describe('parseBaggage: limits (BG Limits)', () => {
  const many = (n: number): string => Array.from({ length: n }, (_, i) => `key${i}=value`).join(',');

  it('V3.17 keeps 64 members (MUST propagate)', () => {
    expect(parseBaggage(many(64))).toHaveLength(64);
  });

  it('drops whole members past 64 by default', () => {
    const parsed = parseBaggage(many(70));
    expect(parsed).toHaveLength(64);
    expect(parsed[63]?.key).toBe('key63');
  });

  it('V3.18 keeps a member of 8192 bytes (MUST propagate) and drops the member past the limit', () => {
    const big = `a=${'x'.repeat(8190)}`;
    expect(parseBaggage(big)).toEqual([e('a', 'x'.repeat(8190))]);
    expect(parseBaggage(`${big},b=1`)).toEqual([e('a', 'x'.repeat(8190))]);
    expect(parseBaggage(`a=${'x'.repeat(8191)}`)).toEqual([]);
  });

  it('limits apply to all baggage headers combined', () => {
    expect(parseBaggage([many(40), many(40)])).toHaveLength(64);
    const half = `a=${'x'.repeat(5000)}`;
    expect(parseBaggage([half, half.replace('a', 'b')])).toHaveLength(1);
  });

  it('counts the size without OWS, with commas, and keeps later members that still fit', () => {
    // 'a=1' (3) + ',b=22' (5) = 8; 'c=333' would make 14 > 10; 'd=4' makes 12 > 10; nothing else fits.
    expect(parseBaggage('a=1 , b = 22,c=333,d=4', { maxBytes: 10 })).toEqual([e('a', '1'), e('b', '22')]);
    expect(parseBaggage('a=1,c=33333,d=4', { maxBytes: 8 })).toEqual([e('a', '1'), e('d', '4')]);
  });

  it('honours custom limits (higher and lower)', () => {
    expect(parseBaggage(many(100), { maxMembers: 100 })).toHaveLength(100);
    expect(parseBaggage(many(200), { maxMembers: 1000 })).toHaveLength(180); // ABNF: 0*179 more members
    expect(parseBaggage(many(10), { maxMembers: 3 })).toHaveLength(3);
    expect(parseBaggage(many(10), { maxMembers: 0 })).toEqual([]);
    expect(parseBaggage(`a=${'x'.repeat(9000)}`, { maxBytes: 10_000 })).toHaveLength(1);
  });
});

describe('formatBaggage', () => {
  it('V3.1 BG example serialization', () => {
    expect(formatBaggage([e('userId', 'alice'), e('serverNode', 'DF 28'), e('isProduction', 'false')])).toBe(
      'userId=alice,serverNode=DF%2028,isProduction=false',
    );
  });

  it('V3.2 BG non-ASCII values as UTF-8 percent-encoding', () => {
    expect(formatBaggage([e('userId', 'Am\u00e9lie')])).toBe('userId=Am%C3%A9lie');
  });

  it('V3.7 BG MUST encode SP, HTAB, DQUOTE, ";" and "%"; other baggage-octets go as is', () => {
    expect(formatBaggage([e('SomeKey', '\t "\';=asdf!@#$%^&*()')])).toBe("SomeKey=%09%20%22'%3B=asdf!@#$%25^&*()");
  });

  it('V3.19 BG never "+": space, comma, semicolon, backslash, non-ASCII encoded', () => {
    expect(formatBaggage([e('k', 'a b,c;d\\e \u00e9')])).toBe('k=a%20b%2Cc%3Bd%5Ce%20%C3%A9');
  });

  it('encodes astral characters as 4 UTF-8 bytes and a lone surrogate as U+FFFD', () => {
    expect(formatBaggage([e('k', '\u{1f600}'), e('l', 'a\ud800b')])).toBe('k=%F0%9F%98%80,l=a%EF%BF%BDb');
  });

  it('encodes control characters and DEL', () => {
    expect(formatBaggage([e('k', '\u0000\r\n\u007f')])).toBe('k=%00%0D%0A%7F');
  });

  it('writes properties after ";" and leaves out a malformed property set (entry kept)', () => {
    expect(formatBaggage([e('k', 'v', 'p1;p2=2'), e('x', '1', ' p '), e('bad', '1', 'p q'), e('bad2', '1', 'p=\u00e9')])).toBe(
      'k=v;p1;p2=2,x=1;p,bad=1,bad2=1',
    );
  });

  it('skips entries whose key is not a token (or whose value is not a string)', () => {
    const entries = [e('', '1'), e('k v', '1'), e('a/b', '1'), e('k\u00e9', '1'), { key: 'x', value: 5 } as unknown as BaggageMember, e('ok', '1')];
    expect(formatBaggage(entries)).toBe('ok=1');
  });

  it('drops whole members past 64 by default', () => {
    const entries = Array.from({ length: 70 }, (_, i) => e(`k${i}`, 'v'));
    expect(formatBaggage(entries).split(',')).toHaveLength(64);
  });

  it('drops whole members past 8192 bytes (measured after encoding), keeps later ones that fit', () => {
    const big = e('a', 'x'.repeat(8190));
    expect(formatBaggage([big])).toHaveLength(8192);
    expect(formatBaggage([big, e('b', '1')])).toHaveLength(8192);
    expect(formatBaggage([e('a', '\u00e9'.repeat(2000)), e('b', '1')])).toBe('b=1'); // 2 + 12000 bytes > 8192
    expect(formatBaggage([e('a', '1'), e('c', '33333'), e('d', '4')], { maxBytes: 8 })).toBe('a=1,d=4');
  });

  it('never sends more than 180 members, the ABNF maximum, whatever the limit', () => {
    const entries = Array.from({ length: 200 }, (_, i) => e(`k${i}`, 'v'));
    expect(formatBaggage(entries, { maxMembers: 1000 }).split(',')).toHaveLength(180);
  });

  it('returns "" for no entries', () => {
    expect(formatBaggage([])).toBe('');
  });
});

describe('parseBaggageProperties', () => {
  it.each([
    ['V3.5 key-only properties', 'property1;property2', [{ key: 'property1' }, { key: 'property2' }]],
    ['V3.5 key=value property', 'propertyKey=propertyValue', [{ key: 'propertyKey', value: 'propertyValue' }]],
    ['V3.14 property value percent-decoded', 'p=%E2%82%AC', [{ key: 'p', value: '\u20ac' }]],
    ['V3.15 key-only property not decoded', 'ValueProp%20%3D%20PropVal', [{ key: 'ValueProp%20%3D%20PropVal' }]],
    ['OWS around ";" and "="', ' a ; b = 2 ;c', [{ key: 'a' }, { key: 'b', value: '2' }, { key: 'c' }]],
    ['empty value', 'p=', [{ key: 'p', value: '' }]],
    ['invalid UTF-8 in a property value', 'p=%C3', [{ key: 'p', value: '\ufffd' }]],
    ['malformed properties skipped', 'a;;b c;d=\u00e9;e', [{ key: 'a' }, { key: 'e' }]],
    ['empty string', '', []],
  ])('%s', (_rule, raw, expected) => {
    expect(parseBaggageProperties(raw)).toEqual(expected);
  });

  it('reads the properties of parsed members', () => {
    const [member] = parseBaggage('k=v;p=%E2%82%AC;flag');
    expect(parseBaggageProperties(member?.properties ?? '')).toEqual([{ key: 'p', value: '\u20ac' }, { key: 'flag' }]);
  });
});

const tokenArb = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,16}$/);
const octetsArb = fc.stringMatching(/^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{0,12}$/);
const propertiesArb = fc
  .array(fc.tuple(tokenArb, fc.option(octetsArb, { nil: undefined })), { minLength: 1, maxLength: 3 })
  .map((props) => props.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)).join(';'));
const entryArb: fc.Arbitrary<BaggageMember> = fc
  .record({
    key: tokenArb,
    value: fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 20 }), octetsArb),
    properties: fc.option(propertiesArb, { nil: undefined }),
  })
  .map(({ key, value, properties }) => e(key, value, properties));
/** Characters that make near-valid baggage headers likely. */
const bgChar = fc.constantFrom('a', 'Z', '0', '=', ',', ';', ' ', '\t', '%', '2', 'F', 'C', '3', '"', '\\', '\u00e9', '+');
const BAGGAGE_STRING = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+=[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*(;[^,]*)?(,[!#$%&'*+\-.^_`|~0-9A-Za-z]+=[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*(;[^,]*)?)*$/;

describe('baggage properties (fast-check)', () => {
  it('round-trips: parse(format(entries)) equals entries (values any Unicode text)', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 20 }), (entries) => {
        const header = formatBaggage(entries);
        expect(header === '' || BAGGAGE_STRING.test(header)).toBe(true);
        expect(parseBaggage(header)).toEqual(entries);
      }),
      { numRuns: 200 },
    );
  });

  it('never throws; keys are tokens; parse(format(parse(x))) equals parse(x)', () => {
    const input = fc.oneof(
      fc.string(),
      fc.string({ unit: bgChar, maxLength: 60 }),
      fc.array(fc.string({ unit: bgChar, maxLength: 30 }), { maxLength: 3 }),
    );
    fc.assert(
      fc.property(input, (value) => {
        const parsed = parseBaggage(value);
        for (const entry of parsed) expect(entry.key).toMatch(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/);
        const header = formatBaggage(parsed);
        expect(header === '' || BAGGAGE_STRING.test(header)).toBe(true);
        expect(parseBaggage(header)).toEqual(parsed);
      }),
      { numRuns: 500 },
    );
  });

  it('format never exceeds the limits and only drops whole members', () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { maxLength: 30 }),
        fc.integer({ min: 0, max: 20 }),
        fc.integer({ min: 0, max: 400 }),
        (entries, maxMembers, maxBytes) => {
          const header = formatBaggage(entries, { maxMembers, maxBytes });
          expect(Buffer.byteLength(header)).toBeLessThanOrEqual(maxBytes);
          const back = parseBaggage(header, { maxMembers: 1000, maxBytes: 100_000 });
          expect(back.length).toBeLessThanOrEqual(maxMembers);
          // every member sent is one of the entries, whole, in the original order
          let from = 0;
          for (const member of back) {
            const at = entries.findIndex((x, i) => i >= from && x.key === member.key && x.value === member.value);
            expect(at).toBeGreaterThanOrEqual(from);
            from = at + 1;
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('isCanonicalBaggage: a header that can be passed on unparsed', () => {
  it('recognises the common forms and refuses what parsing would change', () => {
    for (const yes of ['userId=alice,isProduction=false', 'k=v', 'tenant.id=acme,a=b=c', 'k=+/:?@[]']) expect([yes, isCanonicalBaggage(yes)]).toEqual([yes, true]);
    for (const no of ['', 'k=', '=v', 'k=v,', ',k=v', 'k = v', 'k=v, a=b', 'k=v;p', 'k=a%20b', 'k=é', 'bad key=v', 'k=v,,a=b', 'k="v"'])
      expect([no, isCanonicalBaggage(no)]).toEqual([no, false]);
  });

  it('honours the member and byte limits, its own and the defaults', () => {
    const members = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=v`).join(',');
    expect(isCanonicalBaggage(members(64))).toBe(true);
    expect(isCanonicalBaggage(members(65))).toBe(false);
    expect(isCanonicalBaggage(members(65), { maxMembers: 180 })).toBe(false);
    expect(isCanonicalBaggage(members(3), { maxMembers: 2 })).toBe(false);
    expect(isCanonicalBaggage(`k=${'v'.repeat(8190)}`)).toBe(true);
    expect(isCanonicalBaggage(`k=${'v'.repeat(8191)}`)).toBe(false);
    expect(isCanonicalBaggage('k=vvvv', { maxBytes: 5 })).toBe(false);
  });

  it('whenever it says yes, parsing and formatting again gives the same string (fast-check, 2000 runs)', () => {
    const octet = fc.constantFrom(...'abcXYZ019!#$&\'()*+-./:<=>?@[]^_`{|}~%,; "\\\té'.split(''));
    const good = fc.constantFrom(...'abcXYZ019!#$&\'()*+-./:<=>?@[]^_`{|}~'.split(''));
    const value = fc.oneof({ weight: 3, arbitrary: fc.string({ unit: good, minLength: 1, maxLength: 8 }) }, { weight: 1, arbitrary: fc.string({ unit: octet, maxLength: 8 }) });
    const members = fc.array(fc.tuple(fc.stringMatching(/^[a-z.]{1,6}$/), value), { maxLength: 70 }).map((ms) => ms.map(([k, v]) => `${k}=${v}`).join(','));
    const limits = fc.option(fc.record({ maxMembers: fc.integer({ min: 1, max: 200 }), maxBytes: fc.integer({ min: 1, max: 9000 }) }), { nil: undefined });
    let canonical = 0;
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: octet, maxLength: 40 }), members), limits, (header, limit) => {
        if (!isCanonicalBaggage(header, limit)) return;
        canonical++;
        expect(formatBaggage(parseBaggage(header), limit)).toBe(header);
      }),
      { numRuns: 2000 },
    );
    expect(canonical).toBeGreaterThan(100); // the property was exercised, not vacuously true
  });
});

describe('parseBaggageOnce', () => {
  it('parses as parseBaggage does, frozen, and gives the same list back for the same header (rebuilt or not)', () => {
    const header = 'tenant=acme,user.id=u%201;p=1';
    const first = parseBaggageOnce(header);
    expect(first).toEqual(parseBaggage(header));
    expect(Object.isFrozen(first)).toBe(true);
    for (const member of first) expect(Object.isFrozen(member)).toBe(true);
    expect(parseBaggageOnce(header.split('').join(''))).toBe(first);
    // Another header is parsed anew; going back parses again (one header is remembered).
    const other = parseBaggageOnce('a=1');
    expect(other).toEqual([e('a', '1')]);
    const again = parseBaggageOnce(header);
    expect(again).not.toBe(first);
    expect(again).toEqual(first);
    expect(parseBaggageOnce('=,;')).toEqual([]);
  });
});
