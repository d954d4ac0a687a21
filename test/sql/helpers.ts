import type { ContextInit } from '../../src/index.js';
/** Reading sqlcommenter comments back out of statement text the database reports. */

/** The key/value pairs of the sqlcommenter comment at the end of `sql` (decoded), or `undefined` when it has none. */
export function parseComment(sql: string): Record<string, string> | undefined {
  const match = /\/\*([^*]*)\*\/\s*;?\s*$/.exec(sql);
  if (match === null) return undefined;
  const body = match[1] as string;
  // Only what the encoder may produce: key='value' pairs over A-Z a-z 0-9 _ . ~ - %.
  if (!/^[A-Za-z0-9_.~%-]+='[A-Za-z0-9_.~%-]*'(,[A-Za-z0-9_.~%-]+='[A-Za-z0-9_.~%-]*')*$/.test(body)) {
    throw new Error(`not a well-formed sqlcommenter comment: ${body}`);
  }
  const pairs: Record<string, string> = {};
  const keys: string[] = [];
  for (const part of body.split(',')) {
    const eq = part.indexOf('=');
    const key = decodeURIComponent(part.slice(0, eq));
    keys.push(part.slice(0, eq));
    pairs[key] = decodeURIComponent(part.slice(eq + 2, -1));
  }
  const sorted = [...keys].sort();
  if (keys.join(',') !== sorted.join(',')) throw new Error(`sqlcommenter keys are not sorted: ${keys.join(',')}`);
  return pairs;
}

/** The comment of `sql`, failing when there is none. */
export function commentOf(sql: string): Record<string, string> {
  const pairs = parseComment(sql);
  if (pairs === undefined) throw new Error(`statement carries no sqlcommenter comment: ${sql}`);
  return pairs;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[0-3])$/;

/** The trace id and parent id of a `traceparent`, failing when it is malformed. */
export function traceOf(traceparent: string | undefined): { traceId: string; parentId: string } {
  const match = TRACEPARENT.exec(traceparent ?? '');
  if (match === null) throw new Error(`malformed traceparent in comment: ${String(traceparent)}`);
  return { traceId: match[1] as string, parentId: match[2] as string };
}

export const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
export const INBOUND_PARENT = 'b7ad6b7169203331';
export const INBOUND_TRACEPARENT = `00-${TRACE_ID}-${INBOUND_PARENT}-01`;

/** PostgreSQL on loopback, as the machine runs it (trust auth, database test). */
export const PG = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' } as const;
/** MariaDB on loopback, as the machine runs it (root without password, database test). */
export const MARIA = { host: '127.0.0.1', port: 3306, user: 'root', database: 'test' } as const;

/** What a value becomes after the cap and the repair of lone surrogates (the encoding itself round-trips). */
export function expectedValue(value: string, max: number): string {
  let text = value.length > max ? value.slice(0, max) : value;
  const last = text.charCodeAt(text.length - 1);
  if (value.length > max && last >= 0xd800 && last <= 0xdbff) text = text.slice(0, -1);
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** The context class of the SQL tests: a declared field (`tenant`) and one that is never declared. */
export class SqlContext {
  correlationId: string;
  tenant?: string;
  /** Never declared: must never reach the database. */
  secret = 'undeclared-secret';
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

/**
 * Sends 200 concurrent requests with their own id and tenant to `url` (an echo route answering the
 * text of `n=2` statements it ran) and returns those whose statements carry another request's id or
 * tenant (or not two statements): `[]` is zero cross-talk.
 */
export async function crossTalk(url: string, prefix: string): Promise<Array<{ id: string; texts: string[] }>> {
  const ids = Array.from({ length: 200 }, (_, i) => `${prefix}-${i}-${Math.random().toString(36).slice(2, 8)}`);
  const results = await Promise.all(
    ids.map(async (id) => {
      const res = await fetch(`${url}?n=2`, { headers: { 'x-request-id': id, 'x-tenant': `tenant-${id}` } });
      return { id, texts: (await res.json()) as string[] };
    }),
  );
  return results.filter(
    ({ id, texts }) => texts.length !== 2 || texts.some((text) => commentOf(text).correlation_id !== id || commentOf(text).tenant !== `tenant-${id}`),
  );
}
