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

type Query = (this: unknown, ...args: unknown[]) => unknown;

/**
 * Calls `fn` with the arguments a wrapper received, `first` in place of the first one: pg's
 * `query` and `connect` take at most three, and a fixed arity spares an array per statement.
 */
function forward(fn: Query, self: unknown, count: number, first: unknown, second: unknown, third: unknown): unknown {
  return count === 0 ? fn.call(self) : count === 1 ? fn.call(self, first) : count === 2 ? fn.call(self, first, second) : fn.call(self, first, second, third);
}

function patchQuery(target: PgClientLike & Patched, commenter: SqlCommenter): void {
  if (target[PATCHED] !== undefined) return;
  const original = target.query as Query;
  Object.defineProperty(target, PATCHED, { value: commenter, configurable: true });
  target.query = function commentedQuery(this: unknown, text?: unknown, values?: unknown, callback?: unknown) {
    return forward(original, this, arguments.length, commentQueryArgument(commenter, text), values, callback);
  };
}

/**
 * Set while a patched `pool.query()` whose statement got its comment calls pg's, which calls
 * `pool.connect(callback)` at once, on a pool that hands out a client in the caller's own context
 * (see {@link servesAtOnce}): that callback then needs no binding to it.
 */
let commentedPoolQuery = false;

/** The counters of a pg-pool `Pool` (public getters) and its `max`. */
interface PoolState {
  readonly waitingCount?: unknown;
  readonly idleCount?: unknown;
  readonly totalCount?: unknown;
  readonly options?: { readonly max?: unknown };
}

/**
 * Whether pg-pool calls a `connect(callback)` made now back in the caller's own async context: no
 * one waits before it, and a client is idle or there is room for a new one. A caller that has to
 * wait is called back by the release of another request's client, in that request's context, so
 * the callback is bound then: every AsyncLocalStorage (a tracer's too) sees the caller's. A pool
 * without these counters is treated as one that may make callers wait.
 */
function servesAtOnce(pool: PoolState): boolean {
  if (pool.waitingCount !== 0) return false;
  const idle = pool.idleCount;
  if (typeof idle === 'number' && idle > 0) return true;
  const total = pool.totalCount;
  const max = pool.options?.max;
  return typeof total === 'number' && typeof max === 'number' && total < max;
}

function patchPoolQuery(pool: PgPoolLike & Patched, commenter: SqlCommenter): void {
  const original = pool.query as Query;
  Object.defineProperty(pool, PATCHED, { value: commenter, configurable: true });
  pool.query = function commentedQuery(this: unknown, text?: unknown, values?: unknown, callback?: unknown) {
    const first = commentQueryArgument(commenter, text);
    // Unchanged (outside a context, named, already commented, a submittable commented in place), or
    // a pool that makes the caller wait: pool.connect binds its callback, so the client runs the
    // statement in the caller's context, never in the one a release calls back in.
    if (first === text || !servesAtOnce(pool as PoolState)) return forward(original, this, arguments.length, first, values, callback);
    commentedPoolQuery = true;
    try {
      return forward(original, this, arguments.length, first, values, callback);
    } finally {
      commentedPoolQuery = false;
    }
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
  if (!isPool(target)) {
    patchQuery(target, commenter);
    return target;
  }
  const pool = target as PgPoolLike & Patched;
  patchPoolQuery(pool, commenter);
  const connect = pool.connect as Query;
  pool.connect = function commentedConnect(this: unknown, callback?: unknown) {
    if (typeof callback === 'function') {
      if (commentedPoolQuery) {
        commentedPoolQuery = false;
        return connect.call(this, callback);
      }
      const bound = bindToCaller((error: unknown, client: PgClientLike | undefined, release: unknown) => {
        if (client !== undefined && client !== null) patchQuery(client, commenter);
        return (callback as (...a: unknown[]) => unknown)(error, client, release);
      });
      return connect.call(this, bound);
    }
    const result = forward(connect, this, arguments.length, callback, undefined, undefined);
    if (result === null || typeof result !== 'object' || typeof (result as PromiseLike<unknown>).then !== 'function') return result;
    return (result as PromiseLike<PgClientLike>).then((client) => {
      patchQuery(client, commenter);
      return client;
    });
  };
  return target;
}
