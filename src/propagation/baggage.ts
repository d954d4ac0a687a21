import { Buffer } from 'node:buffer';
import type { BaggageMember } from '../interfaces/trace-info.interface.js';

/**
 * Limits on the baggage kept by {@link parseBaggage} or sent by {@link formatBaggage}. Members past
 * them are dropped whole. The defaults are the spec's minimums, which a platform MUST propagate.
 */
export interface BaggageLimits {
  /** Most list members kept (default 64; values above 180, the ABNF's maximum, count as 180). */
  readonly maxMembers?: number;
  /** Most bytes of the serialized `baggage-string`, commas included (default 8192). */
  readonly maxBytes?: number;
}

/** One property of a baggage member, from {@link parseBaggageProperties}. */
export interface BaggageProperty {
  /** The property key (a `token`). */
  readonly key: string;
  /** The percent-decoded value; absent for a key-only property (`;flag`). */
  readonly value?: string;
}

const DEFAULT_MAX_MEMBERS = 64;
/** `baggage-string = list-member 0*179( OWS "," OWS list-member )`: never more members than this. */
const ABNF_MAX_MEMBERS = 180;
const DEFAULT_MAX_BYTES = 8192;

const EQUALS = 0x3d;
const SEMICOLON = 0x3b;
const PERCENT = 0x25;

/** 1 for each `tchar` (RFC 7230 §3.2.6) among ASCII codes. */
const TCHAR = new Uint8Array(128);
/** 1 for each `baggage-octet`: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E. */
const OCTET = new Uint8Array(128);
/** 1 for each ASCII character sent as is in a value: `baggage-octet` except `%`. */
const VERBATIM = new Uint8Array(128);
/** `%XX` (uppercase hex) for every byte. */
const PERCENT_ENCODED: string[] = [];

for (const ch of "!#$%&'*+-.^_`|~0123456789") TCHAR[ch.charCodeAt(0)] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = TCHAR[c + 0x20] = 1;
for (let c = 0x21; c <= 0x7e; c++) {
  if (c !== 0x22 && c !== 0x2c && c !== SEMICOLON && c !== 0x5c) OCTET[c] = VERBATIM[c] = 1;
}
VERBATIM[PERCENT] = 0;
/** Both classes in one table for the canonical check: bit 1 `tchar`, bit 2 verbatim value character. */
const CANONICAL = new Uint8Array(128);
for (let c = 0; c < 128; c++) CANONICAL[c] = (TCHAR[c] as number) | ((VERBATIM[c] as number) << 1);
for (let b = 0; b < 256; b++) PERCENT_ENCODED.push(`%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`);

/** OWS (RFC 7230 §3.2.3): space or horizontal tab. */
function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function isTchar(c: number): boolean {
  return c < 128 && TCHAR[c] === 1;
}

function isOctet(c: number): boolean {
  return c < 128 && OCTET[c] === 1;
}

/** Value of one hex digit (either case), or -1. */
function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x57;
  return -1;
}

/** A limit from the caller, or its default when missing or not a number. Negative counts as 0. */
function limitOf(value: number | undefined, fallback: number): number {
  return typeof value === 'number' && !Number.isNaN(value) ? Math.max(0, value) : fallback;
}

/**
 * Percent-decodes `s[start..end)` (ASCII `baggage-octet`s) and reads the bytes as UTF-8, as the
 * spec requires: byte sequences that are not valid UTF-8 become U+FFFD. A `%` not followed by two
 * hex digits is not an escape and is kept literally (the WHATWG URL "percent-decode" rule; the
 * grammar allows a bare `%` in a value, and the spec does not say to reject it). `+` stays `+`.
 */
function percentDecode(s: string, start: number, end: number): string {
  const first = s.indexOf('%', start);
  if (first === -1 || first >= end) return s.slice(start, end);
  const bytes = Buffer.allocUnsafe(end - start);
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === PERCENT && i + 2 < end) {
      const hi = hexDigit(s.charCodeAt(i + 1));
      const lo = hexDigit(s.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        bytes[n++] = (hi << 4) | lo;
        i += 2;
        continue;
      }
    }
    bytes[n++] = c;
  }
  return bytes.toString('utf8', 0, n);
}

/**
 * Percent-encodes a value: every code point outside `baggage-octet`, and `%`, becomes its UTF-8
 * bytes as `%XX`. Never `+` for a space. A lone surrogate is encoded as U+FFFD.
 */
function percentEncode(v: string): string {
  const n = v.length;
  let i = 0;
  while (i < n) {
    const c = v.charCodeAt(i);
    if (c >= 128 || VERBATIM[c] !== 1) break;
    i++;
  }
  if (i === n) return v;
  let out = v.slice(0, i);
  for (; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x80) {
      out += VERBATIM[c] === 1 ? v.charAt(i) : PERCENT_ENCODED[c];
      continue;
    }
    let cp = c;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = v.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    if (cp < 0x800) {
      out += `${PERCENT_ENCODED[0xc0 | (cp >> 6)]}${PERCENT_ENCODED[0x80 | (cp & 0x3f)]}`;
    } else if (cp < 0x10000) {
      out += `${PERCENT_ENCODED[0xe0 | (cp >> 12)]}${PERCENT_ENCODED[0x80 | ((cp >> 6) & 0x3f)]}${PERCENT_ENCODED[0x80 | (cp & 0x3f)]}`;
    } else {
      out += `${PERCENT_ENCODED[0xf0 | (cp >> 18)]}${PERCENT_ENCODED[0x80 | ((cp >> 12) & 0x3f)]}${PERCENT_ENCODED[0x80 | ((cp >> 6) & 0x3f)]}${PERCENT_ENCODED[0x80 | (cp & 0x3f)]}`;
    }
  }
  return out;
}

/** True when `s` is a non-empty `token`. */
function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTchar(s.charCodeAt(i))) return false;
  return true;
}

/**
 * Scans one property (`key OWS` or `key OWS "=" OWS value`, OWS before it allowed) from `i`.
 * Returns where it ends (at `end` or at the `;` that follows), or -1 when malformed.
 * `found` receives the key and raw value bounds when given.
 */
function scanProperty(s: string, i: number, end: number, found?: number[]): number {
  while (i < end && isOws(s.charCodeAt(i))) i++;
  const keyStart = i;
  while (i < end && isTchar(s.charCodeAt(i))) i++;
  if (i === keyStart) return -1;
  const keyEnd = i;
  while (i < end && isOws(s.charCodeAt(i))) i++;
  let valueStart = -1;
  let valueEnd = -1;
  if (i < end && s.charCodeAt(i) === EQUALS) {
    i++;
    while (i < end && isOws(s.charCodeAt(i))) i++;
    valueStart = i;
    while (i < end && isOctet(s.charCodeAt(i))) i++;
    valueEnd = i;
    while (i < end && isOws(s.charCodeAt(i))) i++;
  }
  if (i < end && s.charCodeAt(i) !== SEMICOLON) return -1;
  if (found !== undefined) {
    found[0] = keyStart;
    found[1] = keyEnd;
    found[2] = valueStart;
    found[3] = valueEnd;
  }
  return i;
}

/** True when `s[start..end)` is a well-formed property set (`prop *( OWS ";" OWS prop )`). */
function isPropertySet(s: string, start: number, end: number): boolean {
  let i = start;
  for (;;) {
    i = scanProperty(s, i, end);
    if (i < 0) return false;
    if (i === end) return true;
    i++; // past ';'
  }
}

/** Running state of one parse: the members kept and their serialized size. */
interface ParseState {
  readonly out: BaggageMember[];
  bytes: number;
  readonly maxMembers: number;
  readonly maxBytes: number;
}

/**
 * Parses the list member `s[a..b)` (already trimmed, non-empty) and keeps it if valid and within
 * the limits. `list-member = key OWS "=" OWS value *( OWS ";" OWS property )`.
 */
function parseMember(s: string, a: number, b: number, state: ParseState): void {
  let i = a;
  while (i < b && isTchar(s.charCodeAt(i))) i++;
  if (i === a) return;
  const keyEnd = i;
  while (i < b && isOws(s.charCodeAt(i))) i++;
  if (i === b || s.charCodeAt(i) !== EQUALS) return;
  i++;
  while (i < b && isOws(s.charCodeAt(i))) i++;
  const valueStart = i;
  while (i < b && isOctet(s.charCodeAt(i))) i++;
  const valueEnd = i;
  while (i < b && isOws(s.charCodeAt(i))) i++;

  let propsStart = b;
  if (i < b) {
    if (s.charCodeAt(i) !== SEMICOLON) return;
    propsStart = i + 1;
    while (propsStart < b && isOws(s.charCodeAt(propsStart))) propsStart++;
    if (!isPropertySet(s, propsStart, b)) return;
  }

  // Size as received without OWS: key=value[;properties], plus a comma when not first.
  const size =
    keyEnd - a + 1 + (valueEnd - valueStart) + (propsStart < b ? 1 + b - propsStart : 0) + (state.out.length > 0 ? 1 : 0);
  if (state.bytes + size > state.maxBytes) return;
  state.bytes += size;
  const key = s.slice(a, keyEnd);
  const value = percentDecode(s, valueStart, valueEnd);
  state.out.push(propsStart < b ? { key, value, properties: s.slice(propsStart, b) } : { key, value });
}

/** Parses the members of one header field into `state`. */
function parseField(s: string, state: ParseState): void {
  const n = s.length;
  let i = 0;
  while (i <= n && state.out.length < state.maxMembers) {
    let end = s.indexOf(',', i);
    if (end === -1) end = n;
    let a = i;
    let b = end;
    while (a < b && isOws(s.charCodeAt(a))) a++;
    while (b > a && isOws(s.charCodeAt(b - 1))) b--;
    if (a < b) parseMember(s, a, b, state);
    i = end + 1;
  }
}

/**
 * Parses `baggage` header value(s); several header fields are combined in order. Never throws.
 *
 * - OWS around members, keys, `=`, values, `;` and properties is ignored; empty members are skipped.
 * - An invalid member (key not a `token`, no `=`, a value character outside `baggage-octet`, a
 *   malformed property) is dropped and the other members are kept (the spec leaves this to the
 *   implementation and allows removing the offending member).
 * - Values are percent-decoded as UTF-8: invalid UTF-8 gives U+FFFD (spec MUST); `+` stays `+`; a
 *   `%` that does not start a `%XX` escape is kept literally (the value is kept, not dropped).
 * - Keys are case-sensitive; repeated keys are all kept, in order. The result is an array of plain
 *   entries, so keys such as `__proto__` are ordinary data.
 * - Members past `maxMembers` (default 64, at most 180), or that would take the size past `maxBytes`
 *   (default 8192), are dropped whole; the size is counted as received, without OWS, commas
 *   included. Later members that still fit are kept.
 */
export function parseBaggage(value: string | readonly string[] | undefined, limits?: BaggageLimits): BaggageMember[] {
  const state: ParseState = {
    out: [],
    bytes: 0,
    maxMembers: Math.min(ABNF_MAX_MEMBERS, limitOf(limits?.maxMembers, DEFAULT_MAX_MEMBERS)),
    maxBytes: limitOf(limits?.maxBytes, DEFAULT_MAX_BYTES),
  };
  if (typeof value === 'string') {
    parseField(value, state);
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const field: unknown = value[i];
      if (typeof field === 'string') parseField(field, state);
    }
  }
  return state.out;
}

/** The last header {@link parseBaggageOnce} parsed, and its members. */
let lastHeader: string | undefined;
const NO_PARSED_MEMBERS: readonly BaggageMember[] = Object.freeze([]);
let lastMembers: readonly BaggageMember[] = NO_PARSED_MEMBERS;

/**
 * {@link parseBaggage} of one header field under the default limits, frozen (the list and its
 * members), and remembered for the last header parsed: an inbound `baggage` that OTel's extraction
 * (`ContextPropagator`) and the request's record both read is parsed once, and so is a header that
 * request after request repeats. @internal
 */
export function parseBaggageOnce(header: string): readonly BaggageMember[] {
  if (header === lastHeader) return lastMembers;
  const parsed = parseBaggage(header);
  // Shared by every record whose header is the same: no one may change a member.
  for (let i = 0; i < parsed.length; i++) Object.freeze(parsed[i]);
  const members = Object.freeze(parsed);
  lastHeader = header;
  lastMembers = members;
  return members;
}

/**
 * Forgets the header {@link parseBaggageOnce} remembers (a request's data): called when an app
 * closes, so that nothing of its requests stays in the process. @internal
 */
export function forgetParsedBaggage(): void {
  lastHeader = undefined;
  lastMembers = NO_PARSED_MEMBERS;
}

/**
 * Whether `value` is a `baggage` header that {@link parseBaggage} and then {@link formatBaggage}
 * (both within `limits` and the defaults) would give back unchanged: `key=value` members joined by
 * `,`, with `token` keys, non-empty values of `baggage-octet`s other than `%`, no properties, no
 * whitespace, within the member and byte limits. Such a header can be passed on as it came, without
 * parsing it. A cheap scan; `false` means only "parse it", never "invalid". @internal
 */
export function isCanonicalBaggage(value: string, limits?: BaggageLimits): boolean {
  const maxMembers = Math.min(ABNF_MAX_MEMBERS, DEFAULT_MAX_MEMBERS, limitOf(limits?.maxMembers, DEFAULT_MAX_MEMBERS));
  const maxBytes = Math.min(DEFAULT_MAX_BYTES, limitOf(limits?.maxBytes, DEFAULT_MAX_BYTES));
  const n = value.length;
  if (n === 0 || n > maxBytes) return false;
  // One pass, the character classes read inline from CANONICAL (bit 1: tchar, bit 2: sent as is in a
  // value): through per-character helpers this scan cost about 50 instructions a character on Node 24.
  const classes = CANONICAL;
  let members = 1;
  let i = 0;
  for (;;) {
    const keyStart = i;
    let c = 0;
    while (i < n && (c = value.charCodeAt(i)) < 128 && (classes[c]! & 1) !== 0) i++;
    if (i === keyStart || i >= n || c !== 0x3d) return false;
    const valueStart = ++i;
    while (i < n && (c = value.charCodeAt(i)) < 128 && (classes[c]! & 2) !== 0) i++;
    if (i === valueStart) return false;
    if (i === n) return true;
    if (c !== 0x2c || ++members > maxMembers) return false;
    i++;
  }
}

/**
 * Formats entries as a `baggage` value (`k1=v1,k2=v2;p`, no optional whitespace; `''` when none).
 * Values are percent-encoded (every code point outside `baggage-octet`, and `%`, as UTF-8 `%XX`).
 * Entries whose key is not a valid `token` or whose value is not a string are skipped; a
 * `properties` string that is not a well-formed property set is left out (the entry is kept).
 * Entries past `maxMembers` (default 64, at most 180), or that would take the result past `maxBytes` bytes
 * (default 8192), are dropped whole; later entries that still fit are kept.
 */
export function formatBaggage(entries: readonly BaggageMember[], limits?: BaggageLimits): string {
  const maxMembers = Math.min(ABNF_MAX_MEMBERS, limitOf(limits?.maxMembers, DEFAULT_MAX_MEMBERS));
  const maxBytes = limitOf(limits?.maxBytes, DEFAULT_MAX_BYTES);
  let out = '';
  let count = 0;
  for (let i = 0; i < entries.length && count < maxMembers; i++) {
    const entry: unknown = entries[i];
    if (typeof entry !== 'object' || entry === null) continue;
    const { key, value, properties } = entry as { key?: unknown; value?: unknown; properties?: unknown };
    if (typeof key !== 'string' || !isToken(key) || typeof value !== 'string') continue;
    let member = `${key}=${percentEncode(value)}`;
    if (typeof properties === 'string') {
      let a = 0;
      let b = properties.length;
      while (a < b && isOws(properties.charCodeAt(a))) a++;
      while (b > a && isOws(properties.charCodeAt(b - 1))) b--;
      if (a < b && isPropertySet(properties, a, b)) member += `;${properties.slice(a, b)}`;
    }
    // The result is ASCII: its length in characters is its size in bytes.
    const size = member.length + (count > 0 ? 1 : 0);
    if (out.length + size > maxBytes) continue;
    out += count > 0 ? `,${member}` : member;
    count++;
  }
  return out;
}

/**
 * Splits a raw property set (as in {@link BaggageMember.properties}) into properties, with values
 * percent-decoded like member values. Malformed properties are skipped. Never throws.
 */
export function parseBaggageProperties(properties: string): BaggageProperty[] {
  const out: BaggageProperty[] = [];
  if (typeof properties !== 'string') return out;
  const end = properties.length;
  const found = [0, 0, -1, -1];
  let i = 0;
  while (i <= end) {
    let next = properties.indexOf(';', i);
    if (next === -1) next = end;
    let b = next;
    while (b > i && isOws(properties.charCodeAt(b - 1))) b--;
    if (scanProperty(properties, i, b, found) === b) {
      const key = properties.slice(found[0], found[1]);
      const valueStart = found[2] as number;
      out.push(valueStart < 0 ? { key } : { key, value: percentDecode(properties, valueStart, found[3] as number) });
    }
    i = next + 1;
  }
  return out;
}
