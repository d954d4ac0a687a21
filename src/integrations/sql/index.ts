/**
 * `nestjs-context/sql`: statements issued inside a context carry a sqlcommenter comment — the
 * correlation id, the `traceparent` of the current trace (a fresh parent id per statement) and the
 * context fields you declare — so the database's own views (`pg_stat_activity`, the slow query log,
 * `performance_schema`, query-insights products) tell which request ran a statement. Integrations
 * for node-postgres, mysql2, Kysely, Knex and TypeORM, and a Prisma sqlcommenter plugin, each typed
 * structurally (this entry point imports none of them).
 *
 * @module nestjs-context/sql
 */
export { SqlCommenter, type SqlCommentOptions, type PreparedStatementPolicy } from './comment.js';
export { commentPg, type PgClientLike, type PgPoolLike } from './pg.js';
export { commentMysql2, type Mysql2Like } from './mysql2.js';
export { commentKysely, type KyselyDialectLike, type KyselyConnectionLike, type KyselyCompiledQueryLike } from './kysely.js';
export { commentKnex, type KnexLike } from './knex.js';
export { commentTypeOrm, type TypeOrmDataSourceLike } from './typeorm.js';
export { prismaSqlCommenter, type PrismaSqlCommenterContextLike, type PrismaSqlCommenterTags } from './prisma.js';
