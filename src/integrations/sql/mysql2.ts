import { bindToCaller } from './bind.js';
import { SqlCommenter, toCommenter, type SqlCommentOptions } from './comment.js';

/**
 * The part of a mysql2 connection, pool or pool connection this integration touches (callback or
 * promise API: for `mysql2/promise` objects the callback object they wrap is patched).
 */
export interface Mysql2Like {
  /** `query(sql | options, values?, callback?)`. */
  query: (...args: never[]) => unknown;
}

const PATCHED = Symbol.for('nestjs-context:sql-mysql2');
type Patched = { [PATCHED]?: SqlCommenter };
type Method = (...args: unknown[]) => unknown;
interface Core {
  query: Method;
  execute?: Method;
  getConnection?: Method;
}

/**
 * The first argument with the comment: a string, an options object (`{ sql, values }`, copied) or a
 * command object (mysql2's `Query`, built by `pool.query()`: its `sql` set in place, it is used once).
 */
function commentArgument(commenter: SqlCommenter, arg: unknown): unknown {
  if (typeof arg === 'string') return commenter.apply(arg);
  if (arg === null || typeof arg !== 'object') return arg;
  const options = arg as { sql?: unknown };
  if (typeof options.sql !== 'string') return arg;
  const sql = commenter.apply(options.sql);
  if (sql === options.sql) return arg;
  const proto = Object.getPrototypeOf(arg) as object | null;
  if (proto !== Object.prototype && proto !== null) {
    options.sql = sql;
    return arg;
  }
  return { ...(arg as object), sql };
}

/**
 * Set while a pool's wrapped `query()`/`execute()` whose statement got its comment calls mysql2's,
 * which calls `getConnection(callback)` at once, on a pool that hands out a connection in the
 * caller's own context (see {@link servesAtOnce}): that callback then needs no binding to it.
 */
let commentedPoolCall = false;

/** What mysql2's pool keeps (internal fields, read defensively). */
interface PoolState {
  readonly _freeConnections?: { readonly length?: unknown };
  readonly _allConnections?: { readonly length?: unknown };
  readonly _connectionQueue?: { readonly length?: unknown };
  readonly config?: { readonly connectionLimit?: unknown };
}

/**
 * Whether mysql2's pool calls a `getConnection(callback)` made now back in the caller's own async
 * context: no one queued before it, and a connection is free or there is room for a new one. A
 * queued caller is called back by the release of another request's connection, in that request's
 * context, so the callback is bound then. A pool whose fields are not there is treated as one that
 * may queue.
 */
function servesAtOnce(pool: PoolState): boolean {
  if (pool._connectionQueue?.length !== 0) return false;
  const free = pool._freeConnections?.length;
  if (typeof free === 'number' && free > 0) return true;
  const all = pool._allConnections?.length;
  const limit = pool.config?.connectionLimit;
  return typeof all === 'number' && typeof limit === 'number' && (limit === 0 || all < limit);
}

function wrapMethod(core: Core, name: 'query' | 'execute', commenter: SqlCommenter): void {
  const original = core[name];
  if (typeof original !== 'function') return;
  const pool = typeof core.getConnection === 'function';
  // mysql2's query/execute take at most three arguments: a fixed arity spares an array per statement.
  core[name] = function commented(this: unknown, sql?: unknown, values?: unknown, callback?: unknown) {
    const first = commentArgument(commenter, sql);
    const count = arguments.length;
    if (!pool || first === sql || !servesAtOnce(core as PoolState)) return count < 2 ? original.call(this, first) : count === 2 ? original.call(this, first, values) : original.call(this, first, values, callback);
    commentedPoolCall = true;
    try {
      return count < 2 ? original.call(this, first) : count === 2 ? original.call(this, first, values) : original.call(this, first, values, callback);
    } finally {
      commentedPoolCall = false;
    }
  };
}

function patchCore(core: Core & Patched, commenter: SqlCommenter): void {
  if (core[PATCHED] !== undefined) return;
  Object.defineProperty(core, PATCHED, { value: commenter, configurable: true });
  wrapMethod(core, 'query', commenter);
  if (commenter.prepared === 'comment') wrapMethod(core, 'execute', commenter);
  const getConnection = core.getConnection;
  if (typeof getConnection !== 'function') return;
  core.getConnection = function commentedGetConnection(this: unknown, ...args: unknown[]) {
    const callback = args[0];
    if (typeof callback !== 'function') return getConnection.apply(this, args);
    if (commentedPoolCall) {
      commentedPoolCall = false;
      return getConnection.call(this, callback);
    }
    return getConnection.call(
      this,
      bindToCaller((error: unknown, connection: (Core & Patched) | undefined) => {
        if (connection !== undefined && connection !== null && typeof connection.query === 'function') patchCore(connection, commenter);
        return (callback as Method)(error, connection);
      }),
    );
  };
}

/** The callback object behind a `mysql2/promise` pool or connection, or `target` itself. */
function coreOf(target: object): Core & Patched {
  const wrapped = target as { pool?: unknown; connection?: unknown };
  for (const inner of [wrapped.pool, wrapped.connection]) {
    if (inner !== null && typeof inner === 'object' && typeof (inner as Core).query === 'function') return inner as Core & Patched;
  }
  return target as Core & Patched;
}

/**
 * Makes every statement sent through a mysql2 connection or pool (callback or `mysql2/promise`
 * API) inside a context carry the context's sqlcommenter comment (see {@link SqlCommenter}). For a
 * pool, `query()`, `execute()` and the connections `getConnection()` hands out are covered, and
 * `getConnection(callback)` calls back in the caller's context. `execute()` (server-side prepared
 * statements, cached by their text) is sent unchanged unless `prepared: 'comment'`. Statements
 * outside any context and statements that hold a comment are sent unchanged. Patches the object
 * (for a promise wrapper: the object it wraps) in place, once, and returns `target`. Typed
 * structurally: this entry point does not import `mysql2`.
 *
 * @example
 * const pool = commentMysql2(mysql.createPool({ uri }), { fields: ['tenant'] });
 */
export function commentMysql2<T extends Mysql2Like>(target: T, options?: SqlCommentOptions | SqlCommenter): T {
  if (target === null || typeof target !== 'object' || typeof target.query !== 'function') {
    throw new TypeError('nestjs-context/sql: commentMysql2() needs a mysql2 connection or pool (an object with a query method). Pass the one you created with mysql2.');
  }
  const commenter = toCommenter(options);
  patchCore(coreOf(target), commenter);
  return target;
}
