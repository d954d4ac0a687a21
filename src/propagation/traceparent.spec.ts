import fc from 'fast-check';
import { randomSpanId, randomTraceId } from './ids.js';
import { FLAG_RANDOM, FLAG_SAMPLED, formatTraceparent, parseTraceparent, type TraceParent } from './traceparent.js';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const P = '00f067aa0ba902b7';
/** Trace and parent ids used by the W3C test harness. */
const HT = '12345678901234567890123456789012';
const HP = '1234567890123456';
const OUTGOING = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]$/;

/**
 * What a participant does with an incoming `traceparent`, as the processing model describes:
 * continue the trace with a new parent-id, or restart it (new random trace-id, random flag set).
 */
function outgoing(incoming: string | readonly string[] | undefined): { header: string; parsed: TraceParent | undefined } {
  const parsed = parseTraceparent(incoming);
  const header = parsed
    ? formatTraceparent(parsed.traceId, randomSpanId(), parsed.flags)
    : formatTraceparent(randomTraceId(), randomSpanId(), FLAG_RANDOM);
  return { header, parsed };
}

type Row = {
  /** The spec rule (or VECTORS.md row) the case checks. */
  rule: string;
  input: string | readonly string[] | undefined;
  /** `undefined` = invalid (restart); otherwise the expected parse. */
  expected: TraceParent | undefined;
  /** Expected outgoing flags byte when the trace is kept. */
  outFlags?: string;
};

const ok = (traceId: string, parentId: string, flags: number, version = 0): TraceParent => ({
  version,
  traceId,
  parentId,
  flags,
});

const rows: Row[] = [
  { rule: 'V1.1 TC-20 valid v00, sampled', input: `00-${T}-${P}-01`, expected: ok(T, P, 1), outFlags: '01' },
  { rule: 'V1.2 TC-20 valid v00, not sampled', input: `00-${T}-${P}-00`, expected: ok(T, P, 0), outFlags: '00' },
  { rule: 'V1.3 TC-30 absent header: new trace', input: undefined, expected: undefined },
  { rule: 'V1.4 TC-30 empty value: same as absent', input: '', expected: undefined },
  { rule: 'TC-30 whitespace-only value', input: ' \t ', expected: undefined },
  { rule: 'V1.5 TC-20 version ff is forbidden', input: `ff-${T}-${P}-01`, expected: undefined },
  { rule: 'V1.6 TC-20 versioning: higher version parsed with the 00 layout', input: `cc-${T}-${P}-01`, expected: ok(T, P, 1, 0xcc), outFlags: '01' },
  { rule: 'V1.7 TC-20 versioning: higher version, "-" suffix ignored', input: `cc-${T}-${P}-01-what-the-future-will-be-like`, expected: ok(T, P, 1, 0xcc) },
  { rule: 'V1.8 TC-20 versioning: flags must be followed by "-" or end', input: `cc-${T}-${P}-01.what-the-future-will-be-like`, expected: undefined },
  { rule: 'V1.9 TC-20 versioning: higher version shorter than 55', input: `cc-${T}-${P}-0`, expected: undefined },
  { rule: 'TC-20 versioning: higher version, "-" right after flags then nothing', input: `cc-${T}-${P}-01-`, expected: ok(T, P, 1, 0xcc) },
  { rule: 'TC-20 versioning: version 01 is a higher version', input: `01-${T}-${P}-00-x`, expected: ok(T, P, 0, 1) },
  { rule: 'TC-20 versioning: version fe is the highest valid', input: `fe-${T}-${P}-03`, expected: ok(T, P, 3, 0xfe) },
  { rule: 'TC-20 versioning: higher version, uppercase flags', input: `cc-${T}-${P}-0A`, expected: undefined },
  { rule: 'TC-20 versioning: higher version, all-zero trace-id', input: `cc-${'0'.repeat(32)}-${P}-01`, expected: undefined },
  { rule: 'RFC 9110 §5.3: higher version combined with a second field (",")', input: `cc-${T}-${P}-01-x, cc-${T}-${P}-01`, expected: undefined },
  { rule: 'V1.10 TC-20 v00: trailing character', input: `00-${T}-${P}-01.`, expected: undefined },
  { rule: 'V1.11 TC-20 v00 must be exactly 55 characters', input: `00-${T}-${P}-01-what-the-future-will-be-like`, expected: undefined },
  { rule: 'TC-20 v00: trailing dash', input: `00-${T}-${P}-01-`, expected: undefined },
  { rule: 'V1.12 TC-20 version: illegal character (first)', input: `.0-${T}-${P}-01`, expected: undefined },
  { rule: 'V1.12 TC-20 version: illegal character (second)', input: `0.-${T}-${P}-01`, expected: undefined },
  { rule: 'V1.13 TC-20 version too long (3)', input: `000-${T}-${P}-01`, expected: undefined },
  { rule: 'V1.13 TC-20 version too long (4)', input: `0000-${T}-${P}-01`, expected: undefined },
  { rule: 'V1.13 TC-20 version too short', input: `0-${T}-${P}-01`, expected: undefined },
  { rule: 'V1.14 TC-20 HEXDIGLC: uppercase version', input: `0A-${T}-${P}-01`, expected: undefined },
  { rule: 'TC-20 HEXDIGLC: uppercase higher version', input: `CC-${T}-${P}-01`, expected: undefined },
  { rule: 'V1.15 TC-20 trace-id all zeros is invalid', input: `00-${'0'.repeat(32)}-${P}-01`, expected: undefined },
  { rule: 'V1.16 TC-20 parent-id all zeros is invalid', input: `00-${T}-${'0'.repeat(16)}-01`, expected: undefined },
  { rule: 'V1.17 TC-20 HEXDIGLC: uppercase trace-id', input: `00-${T.toUpperCase()}-${P}-01`, expected: undefined },
  { rule: 'V1.18 TC-20 HEXDIGLC: uppercase parent-id', input: `00-${T}-${P.toUpperCase()}-01`, expected: undefined },
  { rule: 'TC-20 HEXDIGLC: one uppercase hex in trace-id', input: `00-${T.slice(0, 31)}F-${P}-01`, expected: undefined },
  { rule: 'TC-20 trace-id: illegal character (first)', input: `00-.${HT.slice(1)}-${HP}-01`, expected: undefined },
  { rule: 'TC-20 trace-id: illegal character (last)', input: `00-${HT.slice(0, 31)}.-${HP}-01`, expected: undefined },
  { rule: 'TC-20 trace-id: non-hex letter', input: `00-${T.slice(0, 31)}g-${P}-01`, expected: undefined },
  { rule: 'V1.19 TC-20 trace-id of 33 hex', input: `00-${HT}3-${HP}-01`, expected: undefined },
  { rule: 'V1.19 TC-20 trace-id of 31 hex', input: `00-${HT.slice(0, 31)}-${HP}-01`, expected: undefined },
  { rule: 'V1.20 TC-20 parent-id of 17 hex', input: `00-${HT}-${HP}7-01`, expected: undefined },
  { rule: 'V1.20 TC-20 parent-id of 15 hex', input: `00-${HT}-${HP.slice(0, 15)}-01`, expected: undefined },
  { rule: 'TC-20 parent-id: illegal characters', input: `00-${HT}-.${HP.slice(1)}-01`, expected: undefined },
  { rule: 'TC-20 layout: 31-hex trace-id + 17-hex parent-id (55 chars)', input: `00-${T.slice(0, 31)}-${P}0-01`, expected: undefined },
  { rule: 'V1.21 TC-20 trace-flags too long', input: `00-${HT}-${HP}-001`, expected: undefined },
  { rule: 'V1.21 TC-20 trace-flags too short', input: `00-${HT}-${HP}-1`, expected: undefined },
  { rule: 'V1.21 TC-20 trace-flags illegal character (first)', input: `00-${HT}-${HP}-.0`, expected: undefined },
  { rule: 'V1.21 TC-20 trace-flags illegal character (second)', input: `00-${HT}-${HP}-0.`, expected: undefined },
  { rule: 'V1.21 TC-20 trace-flags uppercase', input: `00-${HT}-${HP}-0A`, expected: undefined },
  { rule: 'V1.21 TC-20 trace-flags " 1" (no lenient integer parse)', input: `00-${HT}-${HP}- 1`, expected: undefined },
  { rule: 'TC-20 trace-flags "-1"', input: `00-${HT}-${HP}--1`, expected: undefined },
  { rule: 'TC-20 trace-flags "0x"', input: `00-${HT}-${HP}-0x`, expected: undefined },
  { rule: 'V1.22 RFC 9110 OWS: leading space', input: ` 00-${HT}-${HP}-01`, expected: ok(HT, HP, 1) },
  { rule: 'V1.22 RFC 9110 OWS: leading tab', input: `\t00-${HT}-${HP}-01`, expected: ok(HT, HP, 1) },
  { rule: 'V1.22 RFC 9110 OWS: trailing space', input: `00-${HT}-${HP}-01 `, expected: ok(HT, HP, 1) },
  { rule: 'V1.22 RFC 9110 OWS: trailing tab', input: `00-${HT}-${HP}-01\t`, expected: ok(HT, HP, 1) },
  { rule: 'V1.22 RFC 9110 OWS: both sides', input: `\t 00-${HT}-${HP}-01 \t`, expected: ok(HT, HP, 1) },
  { rule: 'RFC 9110 OWS is SP/HTAB only: newline', input: `\n00-${HT}-${HP}-01`, expected: undefined },
  { rule: 'RFC 9110 OWS is SP/HTAB only: CRLF', input: `00-${HT}-${HP}-01\r\n`, expected: undefined },
  { rule: 'RFC 9110 OWS is SP/HTAB only: no-break space', input: `\u00a000-${HT}-${HP}-01`, expected: undefined },
  { rule: 'TC-20 layout: whitespace inside the value', input: `00 -${T}-${P}-01`, expected: undefined },
  { rule: 'TC-20 layout: wrong delimiter', input: `00_${T}_${P}_01`, expected: undefined },
  { rule: 'V1.23 multiple traceparent fields (array)', input: [`00-${HT}-${HP}-01`, `00-${T}-${HP}-01`], expected: undefined },
  { rule: 'V1.23 multiple fields combined as "a,b"', input: `00-${HT}-${HP}-01,00-${T}-${HP}-01`, expected: undefined },
  { rule: 'V1.23 multiple fields combined as "a, b"', input: `00-${HT}-${HP}-01, 00-${T}-${HP}-01`, expected: undefined },
  { rule: 'V1.23 the same field twice is still two fields', input: [`00-${T}-${P}-01`, `00-${T}-${P}-01`], expected: undefined },
  { rule: 'one header field given as a one-element array', input: [`00-${T}-${P}-01`], expected: ok(T, P, 1) },
  { rule: 'no header field given as an empty array', input: [], expected: undefined },
  { rule: 'V1.26 TC-20 other flags: ff kept on parse, zeroed on send', input: `00-${T}-${P}-ff`, expected: ok(T, P, 0xff), outFlags: '03' },
  { rule: 'V1.27 TC-20 random-trace-id flag kept', input: `00-${T}-${P}-02`, expected: ok(T, P, 2), outFlags: '02' },
  { rule: 'V1.28 TC-20 reserved bit 0x08 dropped on send', input: `00-${T}-${P}-09`, expected: ok(T, P, 9), outFlags: '01' },
  { rule: 'TC-30 higher version: unknown flags set to 0 on send', input: `cc-${T}-${P}-fd`, expected: ok(T, P, 0xfd, 0xcc), outFlags: '01' },
  { rule: 'V1.30 ASCII only: Arabic-Indic digit in flags', input: `00-${T}-${P}-0\u0661`, expected: undefined },
  { rule: 'ASCII only: fullwidth digit in trace-id', input: `00-${T.slice(0, 31)}\uff11-${P}-01`, expected: undefined },
  { rule: 'ASCII only: astral character makes the length wrong', input: `00-${T}-${P}-0\u{1d7cf}`, expected: undefined },
];

describe('parseTraceparent: table (VECTORS.md §1 + TC-20/TC-30)', () => {
  it.each(rows)('$rule', ({ input, expected, outFlags }) => {
    const parsed = parseTraceparent(input);
    expect(parsed).toEqual(expected);
    const { header } = outgoing(input);
    expect(header).toMatch(OUTGOING);
    if (expected) {
      // keep: same trace-id, new parent-id, version downgraded to 00
      expect(header.slice(3, 35)).toBe(expected.traceId);
      expect(header.slice(36, 52)).not.toBe(expected.parentId);
      if (outFlags !== undefined) expect(header.slice(53)).toBe(outFlags);
    } else {
      // restart: a new non-zero trace-id, random flag set, not sampled
      expect(header.slice(3, 35)).not.toBe(T);
      expect(header.slice(3, 35)).not.toBe(HT);
      expect(header.slice(3, 35)).not.toBe('0'.repeat(32));
      expect(header.slice(53)).toBe('02');
    }
  });

  it('V1.29: one incoming request, 3 outgoing calls: 3 distinct parent-ids, one trace-id', () => {
    const headers = [1, 2, 3].map(() => outgoing(`00-${HT}-${HP}-01`).header);
    expect(new Set(headers.map((h) => h.slice(3, 35)))).toEqual(new Set([HT]));
    expect(new Set(headers.map((h) => h.slice(36, 52))).size).toBe(3);
  });

  it('V1.15/AdvancedTest: an illegal traceparent restarts every outgoing call with a non-zero trace-id', () => {
    const headers = [1, 2, 3].map(() => outgoing(`00-${'0'.repeat(32)}-${HP}-01`).header);
    for (const h of headers) expect(h.slice(3, 35)).not.toBe('0'.repeat(32));
    expect(new Set(headers.map((h) => h.slice(36, 52))).size).toBe(3);
  });

  it('never throws on values of the wrong type (JavaScript callers)', () => {
    const odd: unknown[] = [null, 0, 42, {}, [1], [null], true, Symbol('x'), () => 1];
    for (const value of odd) expect(parseTraceparent(value as string)).toBeUndefined();
  });
});

describe('formatTraceparent', () => {
  it.each([
    [0, '00'],
    [FLAG_SAMPLED, '01'],
    [FLAG_RANDOM, '02'],
    [FLAG_SAMPLED | FLAG_RANDOM, '03'],
    [0x04, '00'],
    [0x09, '01'],
    [0xff, '03'],
    [0x1ff, '03'],
  ])('TC-20 other flags MUST be zero: flags %i -> "%s"', (flags, hex) => {
    expect(formatTraceparent(T, P, flags)).toBe(`00-${T}-${P}-${hex}`);
  });

  it('formats the spec example', () => {
    expect(formatTraceparent('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 1)).toBe(
      '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    );
  });

  it.each([
    ['all-zero trace-id', '0'.repeat(32), P],
    ['uppercase trace-id', T.toUpperCase(), P],
    ['short trace-id', T.slice(1), P],
    ['all-zero parent-id', T, '0'.repeat(16)],
    ['uppercase parent-id', T, P.toUpperCase()],
    ['long parent-id', T, `${P}0`],
  ])('throws a TypeError on an invalid id (%s): never emits an invalid header', (_name, traceId, parentId) => {
    expect(() => formatTraceparent(traceId, parentId, 1)).toThrow(TypeError);
  });
});

const hex = (length: number): fc.Arbitrary<string> =>
  fc.stringMatching(new RegExp(`^[0-9a-f]{${length}}$`)).filter((s) => /[1-9a-f]/.test(s));
const byteHex = (b: number): string => b.toString(16).padStart(2, '0');
const validHeader = fc
  .record({ traceId: hex(32), parentId: hex(16), flags: fc.integer({ min: 0, max: 255 }) })
  .map(({ traceId, parentId, flags }) => `00-${traceId}-${parentId}-${byteHex(flags)}`);
/** A valid header with a few random edits: near-misses are where parsers go wrong. */
const nearMiss = fc
  .tuple(
    validHeader,
    fc.array(
      fc.record({
        op: fc.constantFrom('replace', 'insert', 'delete'),
        at: fc.nat(60),
        ch: fc.constantFrom('-', '0', 'a', 'A', 'f', 'g', ' ', '\t', ',', '.', '\u0661', 'ff', 'cc'),
      }),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([header, edits]) => {
    let s = header;
    for (const { op, at, ch } of edits) {
      const i = Math.min(at, s.length);
      if (op === 'replace') s = s.slice(0, i) + ch + s.slice(i + 1);
      else if (op === 'insert') s = s.slice(0, i) + ch + s.slice(i);
      else s = s.slice(0, i) + s.slice(i + 1);
    }
    return s;
  });
const anyInput: fc.Arbitrary<string | string[]> = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 80 }),
  nearMiss,
  fc.array(fc.oneof(validHeader, nearMiss), { maxLength: 3 }),
);

describe('traceparent properties (fast-check)', () => {
  it('round-trips: parse(valid v00 header) gives its fields; format gives it back with flags masked', () => {
    fc.assert(
      fc.property(hex(32), hex(16), fc.integer({ min: 0, max: 255 }), (traceId, parentId, flags) => {
        const header = `00-${traceId}-${parentId}-${byteHex(flags)}`;
        expect(parseTraceparent(header)).toEqual({ version: 0, traceId, parentId, flags });
        const out = formatTraceparent(traceId, parentId, flags);
        expect(out).toBe(`00-${traceId}-${parentId}-${byteHex(flags & 3)}`);
        expect(parseTraceparent(out)).toEqual({ version: 0, traceId, parentId, flags: flags & 3 });
      }),
      { numRuns: 300 },
    );
  });

  it('never throws, and whatever it accepts formats to a valid v00 header that parses back', () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        const parsed = parseTraceparent(input);
        if (parsed === undefined) return;
        expect(parsed.version).toBeGreaterThanOrEqual(0);
        expect(parsed.version).toBeLessThan(0xff);
        expect(parsed.flags).toBeGreaterThanOrEqual(0);
        expect(parsed.flags).toBeLessThanOrEqual(0xff);
        const out = formatTraceparent(parsed.traceId, parsed.parentId, parsed.flags);
        expect(out).toMatch(OUTGOING);
        expect(parseTraceparent(out)).toEqual({ ...parsed, version: 0, flags: parsed.flags & 3 });
      }),
      { numRuns: 600 },
    );
  });

  it('accepts a v00 header exactly when it matches the ABNF (reference regex on near-misses)', () => {
    const reference = /^[ \t]*00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}[ \t]*$/;
    fc.assert(
      fc.property(nearMiss, (input) => {
        if (!input.trimStart().startsWith('00-')) return;
        expect(parseTraceparent(input) !== undefined).toBe(reference.test(input));
      }),
      { numRuns: 600 },
    );
  });
});
