import { randomUUID } from 'node:crypto';

const DEFAULT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The default correlation id check: 1–128 characters of `[A-Za-z0-9._:-]`. */
export function isValidCorrelationId(id: string): boolean {
  return DEFAULT_ID.test(id);
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
