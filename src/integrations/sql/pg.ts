import { bindToCaller } from './bind.js';
import { SqlCommenter, toCommenter, type SqlCommentOptions } from './comment.js';

/** The part of a node-postgres `Client` (or `PoolClient`) this integration touches. */
export interface PgClientLike {
  /** `client.query(text | config | submittable, values?, callback?)`. */
  query: (...args: never[]) => unknown;
}

/** The part of a node-postgres `Pool` this integration touches. */
export interface PgPoolLike extends PgClientLike {
  /** `pool.connect()` (a promise of a client) or `pool.connect(callback)`. */
  connect: (...args: never[]) => unknown;
}

const PATCHED = Symbol.for('nestjs-context:sql-pg');
type Patched = { [PATCHED]?: SqlCommenter };

/**
 * The first argument of `query` with the comment: a string, a config object (`{ text, values }`,
 * copied) or a submittable (`Query`, `Cursor`, `QueryStream`: its `text` set in place, it is used
 * once). Named queries (`{ name, text }`) are sent unchanged: pg prepares them once per connection
 * and refuses a name whose text changes.
 */
function commentQueryArgument(commenter: SqlCommenter, arg: unknown): unknown {
  if (typeof arg === 'string') return commenter.apply(arg);
  if (arg === null || typeof arg !== 'object') return arg;
  const config = arg as { text?: unknown; name?: unknown; submit?: unknown };
  if (typeof config.text !== 'string' || (config.name !== undefined && config.name !== null && config.name !== '')) return arg;
  const text = commenter.apply(config.text);
  if (text === config.text) return arg;
  if (typeof config.submit === 'function') {
    config.text = text;
    return arg;
  }
  return Object.assign(Object.create(Object.getPrototypeOf(arg) as object | null) as object, arg, { text });
}

function patchQuery(target: PgClientLike & Patched, commenter: SqlCommenter): void {
  if (target[PATCHED] !== undefined) return;
  const original = target.query;
  Object.defineProperty(target, PATCHED, { value: commenter, configurable: true });
  target.query = function commentedQuery(this: unknown, ...args: unknown[]) {
    if (args.length > 0) args[0] = commentQueryArgument(commenter, args[0]);
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
}

function isPool(target: PgClientLike): target is PgPoolLike {
  return typeof (target as Partial<PgPoolLike>).connect === 'function' && typeof (target as { release?: unknown }).release !== 'function' && 'totalCount' in target;
}

/**
 * Makes every statement sent through a node-postgres `Pool` or `Client` inside a context carry
 * the context's sqlcommenter comment (see {@link SqlCommenter}). For a pool, `pool.query()` and
 * the clients `pool.connect()` hands out are covered; `pool.connect(callback)` calls back in the
 * caller's context. Statements outside any context, statements that hold a comment and named
 * (prepared) queries are sent unchanged. Patches the object in place (once; later calls are
 * no-ops) and returns it. Typed structurally: this entry point does not import `pg`.
 *
 * @example
 * const pool = commentPg(new Pool({ connectionString }), { fields: ['tenant'] });
 */
export function commentPg<T extends PgClientLike>(target: T, options?: SqlCommentOptions | SqlCommenter): T {
  if (target === null || typeof target !== 'object' || typeof target.query !== 'function') {
    throw new TypeError('nestjs-context/sql: commentPg() needs a pg Pool or Client (an object with a query method). Pass the pool or client you created with pg.');
  }
  const commenter = toCommenter(options);
  if ((target as Patched)[PATCHED] !== undefined) return target;
  patchQuery(target, commenter);
  if (isPool(target)) {
    const pool = target as PgPoolLike;
    const connect = pool.connect as (...a: unknown[]) => unknown;
    pool.connect = function commentedConnect(this: unknown, ...args: unknown[]) {
      const callback = args[0];
      if (typeof callback === 'function') {
        const bound = bindToCaller((error: unknown, client: PgClientLike | undefined, release: unknown) => {
          if (client !== undefined && client !== null) patchQuery(client, commenter);
          return (callback as (...a: unknown[]) => unknown)(error, client, release);
        });
        return connect.call(this, bound);
      }
      const result = connect.apply(this, args);
      if (result === null || typeof result !== 'object' || typeof (result as PromiseLike<unknown>).then !== 'function') return result;
      return (result as PromiseLike<PgClientLike>).then((client) => {
        patchQuery(client, commenter);
        return client;
      });
    };
  }
  return target;
}
