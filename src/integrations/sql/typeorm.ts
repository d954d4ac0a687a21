import { SqlCommenter, toCommenter, type SqlCommentOptions } from './comment.js';

/** The part of a TypeORM `DataSource` this integration touches: its driver's query runner factory. */
export interface TypeOrmDataSourceLike {
  /** The driver (`dataSource.driver`), which creates every query runner. */
  driver: object;
}

const PATCHED = Symbol.for('nestjs-context:sql-typeorm');
type Patched = { [PATCHED]?: SqlCommenter };
type Method = (...args: unknown[]) => unknown;

function patchRunner(runner: unknown, commenter: SqlCommenter): void {
  if (runner === null || typeof runner !== 'object' || (runner as Patched)[PATCHED] !== undefined) return;
  Object.defineProperty(runner, PATCHED, { value: commenter, configurable: true });
  const target = runner as Record<'query' | 'stream', Method | undefined>;
  for (const name of ['query', 'stream'] as const) {
    const original = target[name];
    if (typeof original !== 'function') continue;
    target[name] = function commented(this: unknown, sql: unknown, ...rest: unknown[]) {
      return original.call(this, typeof sql === 'string' ? commenter.apply(sql) : sql, ...rest);
    };
  }
}

/**
 * Makes every statement a TypeORM `DataSource` runs inside a context carry the context's
 * sqlcommenter comment (see {@link SqlCommenter}): repositories, the entity manager, query
 * builders, `dataSource.query()` and transactions (`START TRANSACTION`/`COMMIT` included), on any
 * driver, with no logger involved. Every statement goes through a query runner's `query()`; this
 * wraps the runners the data source's driver creates. Call it before or after `initialize()`;
 * returns `dataSource`. Statements of TypeORM's `.comment()` already hold a comment and are sent
 * unchanged. Typed structurally: this entry point does not import `typeorm`.
 *
 * @example
 * const dataSource = commentTypeOrm(new DataSource({ type: 'postgres', ... }), { fields: ['tenant'] });
 */
export function commentTypeOrm<D extends TypeOrmDataSourceLike>(dataSource: D, options?: SqlCommentOptions | SqlCommenter): D {
  const driver = (dataSource as Partial<TypeOrmDataSourceLike> | null | undefined)?.driver as ({ createQueryRunner?: unknown } & Patched) | undefined;
  if (driver === null || typeof driver !== 'object' || typeof driver.createQueryRunner !== 'function') {
    throw new TypeError('nestjs-context/sql: commentTypeOrm() needs a TypeORM DataSource (new DataSource({ type, ... })).');
  }
  const commenter = toCommenter(options);
  if (driver[PATCHED] !== undefined) return dataSource;
  Object.defineProperty(driver, PATCHED, { value: commenter, configurable: true });
  const create = driver.createQueryRunner as Method;
  driver.createQueryRunner = function commentedCreateQueryRunner(this: unknown, ...args: unknown[]) {
    const runner = create.apply(this, args);
    patchRunner(runner, commenter);
    return runner;
  };
  return dataSource;
}
