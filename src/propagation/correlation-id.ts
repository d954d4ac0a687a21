import { randomUUID } from 'node:crypto';

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

/** The default correlation id generator: a random (version 4) UUID. */
export function generateCorrelationId(): string {
  return randomUUID();
}

/**
 * Returns the first value among `names` (lower-case header names) that passes `validate`,
 * or `undefined`. A header sent several times counts by its first value.
 */
export function readCorrelationId(
  headers: Readonly<Record<string, string | readonly string[] | undefined>>,
  names: readonly string[],
  validate: (id: string) => boolean,
): string | undefined {
  for (let i = 0; i < names.length; i++) {
    let value = headers[names[i] as string];
    if (value === undefined) continue;
    if (typeof value !== 'string') value = value[0];
    if (typeof value === 'string' && validate(value)) return value;
  }
  return undefined;
}
