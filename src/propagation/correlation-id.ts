import { uuidV7 } from './ids.js';

/** 1 for the characters the default check allows (`[A-Za-z0-9._:-]`), by char code below 128. */
const ID_CHARS = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-') ID_CHARS[c.charCodeAt(0)] = 1;

/**
 * The default correlation id check: 1–128 characters of `[A-Za-z0-9._:-]`. A loop over a lookup
 * table (it runs on every request), equivalent to `/^[A-Za-z0-9._:-]{1,128}$/` for strings; anything
 * that is not a string fails.
 */
export function isValidCorrelationId(id: string): boolean {
  if (typeof id !== 'string') return false;
  const n = id.length;
  if (n === 0 || n > 128) return false;
  for (let i = 0; i < n; i++) {
    const c = id.charCodeAt(i);
    if (c >= 128 || ID_CHARS[c] === 0) return false;
  }
  return true;
}

/**
 * The default correlation id generator: a UUID version 7 (RFC 9562), time-ordered, so logs and
 * stores can find a request by time without a scan; see `uuidV7()` for the layout and the ordering.
 */
export function generateCorrelationId(): string {
  return uuidV7();
}

/**
 * Returns the first valid correlation id among the headers `names` (lower-case), or `undefined`.
 *
 * The rule, for every source alike: **the first value that passes `validate` wins**. Headers are
 * tried in the order of `names`; a header that holds several values — an array (message metadata
 * with candidates from several places, in priority order) or a string joined from repeated HTTP
 * headers (`a, b`, as Node joins them) — is tried value by value: the whole string first (your
 * validator may accept commas), then its comma-separated parts, trimmed.
 */
export function readCorrelationId(
  headers: Readonly<Record<string, string | readonly string[] | undefined>>,
  names: readonly string[],
  validate: (id: string) => boolean,
): string | undefined {
  for (let i = 0; i < names.length; i++) {
    const value = headers[names[i] as string];
    if (value === undefined) continue;
    if (typeof value === 'string') {
      if (validate(value)) return value;
      const part = firstValidPart(value, validate);
      if (part !== undefined) return part;
    } else if (Array.isArray(value)) {
      for (const item of value as readonly unknown[]) {
        if (typeof item !== 'string') continue;
        if (validate(item)) return item;
        const part = firstValidPart(item, validate);
        if (part !== undefined) return part;
      }
    }
  }
  return undefined;
}

/** The first comma-separated, trimmed part of `value` that passes `validate` (only when there are several parts). */
function firstValidPart(value: string, validate: (id: string) => boolean): string | undefined {
  if (!value.includes(',')) return undefined;
  for (const raw of value.split(',')) {
    const part = raw.trim();
    if (part !== '' && validate(part)) return part;
  }
  return undefined;
}

/**
 * Whether `value` can be sent as an HTTP header value as it is (Node's `setHeader` accepts it):
 * tab, printable ASCII and bytes 0x80–0xFF only. @internal
 */
export function isHeaderValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 9) continue;
    if (c < 0x20 || c === 0x7f || c > 0xff) return false;
  }
  return true;
}
