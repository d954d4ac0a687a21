import { SqlCommenter, toCommenter, type SqlCommentOptions } from './comment.js';

/** The part of a Knex instance this integration touches: its client. */
export interface KnexLike {
  /** The dialect client (`knex.client`); its `config` object is shared with transaction clients. */
  client: object;
}

/** Knex configs whose statements carry a comment, and with which commenter. */
const COMMENTERS = new WeakMap<object, SqlCommenter>();
const PATCHED = Symbol.for('nestjs-context:sql-knex');
type Method = (...args: unknown[]) => unknown;

interface QueryObject {
  sql?: unknown;
}

function patchPrototype(proto: object, name: '_query' | '_stream'): void {
  const holder = proto as Record<string, unknown>;
  const original = holder[name];
  if (typeof original !== 'function') return;
  holder[name] = function commented(this: { config?: object }, connection: unknown, obj: unknown, ...rest: unknown[]) {
    const commenter = this.config === undefined ? undefined : COMMENTERS.get(this.config);
    if (commenter !== undefined && obj !== null && typeof obj === 'object' && typeof (obj as QueryObject).sql === 'string') {
      (obj as QueryObject).sql = commenter.apply((obj as QueryObject).sql as string);
    }
    return (original as Method).call(this, connection, obj, ...rest);
  };
}

/**
 * Makes every statement a Knex instance runs inside a context carry the context's sqlcommenter
 * comment (see {@link SqlCommenter}): query builder, `raw`, transactions (`BEGIN`/`COMMIT`
 * included) and streams, on any dialect. Knex's `query` event cannot change a statement, so this
 * hooks the dialect client's `_query`/`_stream`, where Knex hands the final SQL (positional
 * bindings already in place) to the driver: once per dialect client class, active only for the
 * instances passed here (and their transactions, which share the instance's config). Returns
 * `knex`. Typed structurally: this entry point does not import `knex`.
 *
 * @example
 * const db = commentKnex(knex({ client: 'pg', connection }), { fields: ['tenant'] });
 */
export function commentKnex<K extends KnexLike>(knex: K, options?: SqlCommentOptions | SqlCommenter): K {
  const client = (knex as Partial<KnexLike> | null | undefined)?.client as { config?: unknown; _query?: unknown } | undefined;
  if (client === null || typeof client !== 'object' || typeof client._query !== 'function' || client.config === null || typeof client.config !== 'object') {
    throw new TypeError('nestjs-context/sql: commentKnex() needs a Knex instance (the function knex({ client, connection }) returns).');
  }
  const commenter = toCommenter(options);
  if (!COMMENTERS.has(client.config)) COMMENTERS.set(client.config, commenter);
  const proto = Object.getPrototypeOf(client) as (object & { [PATCHED]?: true }) | null;
  if (proto !== null && !Object.prototype.hasOwnProperty.call(proto, PATCHED)) {
    Object.defineProperty(proto, PATCHED, { value: true });
    patchPrototype(proto, '_query');
    patchPrototype(proto, '_stream');
  }
  return knex;
}
