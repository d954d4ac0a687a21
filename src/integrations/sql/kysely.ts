import { SqlCommenter, toCommenter, type SqlCommentOptions } from './comment.js';

/** The part of a Kysely `CompiledQuery` this integration touches. */
export interface KyselyCompiledQueryLike {
  /** The statement text. */
  readonly sql: string;
}

/** The part of a Kysely `DatabaseConnection` this integration touches. */
export interface KyselyConnectionLike {
  /** Runs one compiled query. */
  executeQuery: (compiledQuery: never, ...rest: never[]) => unknown;
  /** Streams one compiled query (optional in this view). */
  streamQuery?: (compiledQuery: never, ...rest: never[]) => unknown;
}

/** The part of a Kysely `Dialect` this integration touches: its driver factory. */
export interface KyselyDialectLike {
  /** Creates the driver whose connections run the statements. */
  createDriver(): unknown;
}

const PATCHED = Symbol.for('nestjs-context:sql-kysely');
type Patched = { [PATCHED]?: SqlCommenter };
type Method = (...args: unknown[]) => unknown;

function commentCompiled(commenter: SqlCommenter, compiled: unknown): unknown {
  if (compiled === null || typeof compiled !== 'object') return compiled;
  const { sql } = compiled as KyselyCompiledQueryLike;
  if (typeof sql !== 'string') return compiled;
  const commented = commenter.apply(sql);
  return commented === sql ? compiled : Object.freeze({ ...(compiled as object), sql: commented });
}

function patchConnection(connection: unknown, commenter: SqlCommenter): void {
  if (connection === null || typeof connection !== 'object' || (connection as Patched)[PATCHED] !== undefined) return;
  Object.defineProperty(connection, PATCHED, { value: commenter, configurable: true });
  const target = connection as Record<'executeQuery' | 'streamQuery', Method | undefined>;
  for (const name of ['executeQuery', 'streamQuery'] as const) {
    const original = target[name];
    if (typeof original !== 'function') continue;
    target[name] = function commented(this: unknown, compiled: unknown, ...rest: unknown[]) {
      return original.call(this, commentCompiled(commenter, compiled), ...rest);
    };
  }
}

function patchDriver(driver: unknown, commenter: SqlCommenter): void {
  if (driver === null || typeof driver !== 'object' || (driver as Patched)[PATCHED] !== undefined) return;
  const target = driver as { acquireConnection?: Method };
  const acquire = target.acquireConnection;
  if (typeof acquire !== 'function') {
    throw new TypeError('nestjs-context/sql: commentKysely(): the dialect created a driver without acquireConnection(); pass a Kysely Dialect (PostgresDialect, MysqlDialect, …).');
  }
  Object.defineProperty(driver, PATCHED, { value: commenter, configurable: true });
  target.acquireConnection = async function commentedAcquire(this: unknown, ...args: unknown[]) {
    const connection = await acquire.apply(this, args);
    patchConnection(connection, commenter);
    return connection;
  };
}

/**
 * Makes every statement a Kysely instance built on `dialect` runs inside a context carry the
 * context's sqlcommenter comment (see {@link SqlCommenter}): queries, raw `sql`, transactions and
 * streams, on any dialect. Patches the dialect's driver factory in place (the dialect is returned,
 * pass it to `new Kysely({ dialect })`). Typed structurally: this entry point does not import
 * `kysely`.
 *
 * @example
 * const db = new Kysely<DB>({ dialect: commentKysely(new PostgresDialect({ pool }), { fields: ['tenant'] }) });
 */
export function commentKysely<D extends KyselyDialectLike>(dialect: D, options?: SqlCommentOptions | SqlCommenter): D {
  if (dialect === null || typeof dialect !== 'object' || typeof dialect.createDriver !== 'function') {
    throw new TypeError('nestjs-context/sql: commentKysely() needs a Kysely Dialect (an object with createDriver()), e.g. new PostgresDialect({ pool }).');
  }
  const commenter = toCommenter(options);
  if ((dialect as Patched)[PATCHED] !== undefined) return dialect;
  Object.defineProperty(dialect, PATCHED, { value: commenter, configurable: true });
  const createDriver = dialect.createDriver;
  dialect.createDriver = function commentedCreateDriver(this: unknown) {
    const driver = createDriver.call(this);
    patchDriver(driver, commenter);
    return driver;
  };
  return dialect;
}
