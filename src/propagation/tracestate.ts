/** Ordered `tracestate` list members as `[key, value]` pairs, left-most (most recent) first. */
export type TraceStateEntries = readonly (readonly [key: string, value: string])[];

/** Most list members a `tracestate` list may hold. */
const MAX_MEMBERS = 32;
/** Longest key and longest value, in characters. */
const MAX_KEY_LENGTH = 256;
const MAX_VALUE_LENGTH = 256;
/** Combined length vendors SHOULD propagate at least; the default cap of {@link formatTracestate}. */
const DEFAULT_MAX_LENGTH = 512;
/** Entries longer than this are the first removed when the list must be shortened. */
const LONG_ENTRY = 128;

const EQUALS = 0x3d;
const COMMA = 0x2c;
const SPACE = 0x20;

/** OWS (RFC 9110 §5.6.3): space or horizontal tab. */
function isOws(c: number): boolean {
  return c === SPACE || c === 0x09;
}

/** `lcalpha / DIGIT`: the characters a key may begin with. */
function isKeyStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39);
}

/** `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`. */
function isKeyChar(c: number): boolean {
  return isKeyStart(c) || c === 0x5f || c === 0x2d || c === 0x2a || c === 0x2f || c === 0x40;
}

/** `chr = %x20 / nblk-chr`: printable ASCII except `,` and `=`. */
function isValueChar(c: number): boolean {
  return c >= SPACE && c <= 0x7e && c !== COMMA && c !== EQUALS;
}

/** True when `s[start..end)` is a valid key. */
function isKeyRange(s: string, start: number, end: number): boolean {
  const length = end - start;
  if (length < 1 || length > MAX_KEY_LENGTH || !isKeyStart(s.charCodeAt(start))) return false;
  for (let i = start + 1; i < end; i++) if (!isKeyChar(s.charCodeAt(i))) return false;
  return true;
}

/** True when `s[start..end)` is a valid value (leading spaces allowed, no trailing space). */
function isValueRange(s: string, start: number, end: number): boolean {
  const length = end - start;
  if (length < 1 || length > MAX_VALUE_LENGTH || s.charCodeAt(end - 1) === SPACE) return false;
  for (let i = start; i < end; i++) if (!isValueChar(s.charCodeAt(i))) return false;
  return true;
}

/**
 * True for a valid `tracestate` key (Trace Context Level 2):
 * `key = ( lcalpha / DIGIT ) 0*255( keychar )`, `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
 * `@` may appear anywhere but first, any number of times (the Level 1 `tenant@system` split is gone).
 */
export function isValidTracestateKey(key: string): boolean {
  return typeof key === 'string' && isKeyRange(key, 0, key.length);
}

/**
 * True for a valid `tracestate` value: 1–256 printable ASCII characters (0x20–0x7E) except `,` and
 * `=`, not ending with a space. Leading spaces are part of the value.
 */
export function isValidTracestateValue(value: string): boolean {
  return typeof value === 'string' && isValueRange(value, 0, value.length);
}

/** Index of the entry for `key` in `entries`, or -1 (lists hold at most 32 entries: a scan is cheapest). */
function indexOfKey(entries: readonly (readonly [string, string])[], key: string): number {
  for (let i = 0; i < entries.length; i++) if ((entries[i] as readonly [string, string])[0] === key) return i;
  return -1;
}

/**
 * Adds the members of one header field to `out`. `seen` is the number of non-empty members met so
 * far (over all fields); returns the new count, or -1 when the header must be dropped.
 */
function parseField(s: string, out: [string, string][], seen: number): number {
  const n = s.length;
  let i = 0;
  while (i <= n) {
    let end = s.indexOf(',', i);
    if (end === -1) end = n;
    let a = i;
    let b = end;
    while (a < b && isOws(s.charCodeAt(a))) a++;
    while (b > a && isOws(s.charCodeAt(b - 1))) b--;
    if (a < b) {
      if (++seen > MAX_MEMBERS) return -1;
      let eq = a;
      while (eq < b && s.charCodeAt(eq) !== EQUALS) eq++;
      if (eq === b || !isKeyRange(s, a, eq) || !isValueRange(s, eq + 1, b)) return -1;
      const key = s.slice(a, eq);
      // Duplicate keys: keep the first (left-most) occurrence; the spec lets a vendor discard
      // duplicates and the test harness accepts either, but the list must not be emptied for it.
      if (indexOfKey(out, key) === -1) out.push([key, s.slice(eq + 1, b)]);
    }
    i = end + 1;
  }
  return seen;
}

/**
 * Parses `tracestate` header value(s). Several header fields are combined in order, as by
 * RFC 9110 §5.3. Call it only after `traceparent` parsed successfully.
 *
 * Returns `[]` when the header is absent, empty or holds only empty / whitespace list members
 * (which are allowed and skipped), and `undefined` when the whole header must be dropped: a member
 * that breaks the key or value grammar, or more than 32 non-empty members. OWS around members is
 * ignored and trailing spaces of a value are dropped; leading spaces of a value are kept.
 * A key repeated in the received list keeps its first (left-most) entry only. Never throws.
 */
export function parseTracestate(value: string | readonly string[] | undefined): TraceStateEntries | undefined {
  if (value === undefined) return [];
  const out: [string, string][] = [];
  if (typeof value === 'string') {
    return parseField(value, out, 0) < 0 ? undefined : out;
  }
  if (!Array.isArray(value)) return undefined;
  let seen = 0;
  for (let i = 0; i < value.length; i++) {
    const field: unknown = value[i];
    if (typeof field !== 'string') return undefined;
    seen = parseField(field, out, seen);
    if (seen < 0) return undefined;
  }
  return out;
}

/**
 * Formats entries as a `tracestate` value (`k1=v1,k2=v2`, no optional whitespace). Entries that
 * are not valid (bad key or value), repeat an earlier key, or come after the 32nd are left out, so
 * the result is always a valid header; `''` means "send no header".
 *
 * When the result would be longer than `maxLength` characters (default 512, the length the spec
 * asks vendors to propagate at least), whole entries are removed as the spec recommends: first the
 * entries longer than 128 characters, right-most first, until it fits; then entries from the right.
 */
export function formatTracestate(entries: TraceStateEntries, maxLength: number = DEFAULT_MAX_LENGTH): string {
  const parts: string[] = [];
  const keys: string[] = [];
  for (let i = 0; i < entries.length && parts.length < MAX_MEMBERS; i++) {
    const entry: unknown = entries[i];
    if (!Array.isArray(entry)) continue;
    const key: unknown = entry[0];
    const value: unknown = entry[1];
    if (typeof key !== 'string' || typeof value !== 'string') continue;
    if (!isKeyRange(key, 0, key.length) || !isValueRange(value, 0, value.length)) continue;
    if (keys.includes(key)) continue;
    keys.push(key);
    parts.push(`${key}=${value}`);
  }

  let chars = 0;
  for (const part of parts) chars += part.length;
  const total = (): number => (parts.length === 0 ? 0 : chars + parts.length - 1);

  if (total() > maxLength) {
    for (let i = parts.length - 1; i >= 0 && total() > maxLength; i--) {
      const part = parts[i] as string;
      if (part.length > LONG_ENTRY) {
        chars -= part.length;
        parts.splice(i, 1);
      }
    }
    while (parts.length > 0 && total() > maxLength) chars -= (parts.pop() as string).length;
  }
  return parts.join(',');
}

/**
 * Returns a new list with `key=value` as the left-most entry and no other entry for `key`, as a
 * vendor does when it mutates `tracestate` (add, or update and move to the front). The order of the
 * other entries is kept; if the list would exceed 32 members the right-most are removed.
 * Throws a `TypeError` when `key` or `value` is not valid (a programmer error).
 */
export function updateTracestate(entries: TraceStateEntries, key: string, value: string): TraceStateEntries {
  if (!isValidTracestateKey(key)) throw new TypeError(`Invalid tracestate key: ${JSON.stringify(key)}`);
  if (!isValidTracestateValue(value)) throw new TypeError(`Invalid tracestate value: ${JSON.stringify(value)}`);
  const out: (readonly [string, string])[] = [[key, value]];
  for (let i = 0; i < entries.length && out.length < MAX_MEMBERS; i++) {
    const entry = entries[i] as readonly [string, string];
    if (entry[0] !== key) out.push(entry);
  }
  return out;
}
