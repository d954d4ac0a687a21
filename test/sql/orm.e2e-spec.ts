import 'reflect-metadata';
import { Controller, Get, Headers, Inject, Module, type INestApplication } from '@nestjs/common';
import knexFactory, { type Knex } from 'knex';
import { Kysely, MysqlDialect, PostgresDialect, sql } from 'kysely';
import mysql from 'mysql2';
import pg from 'pg';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { ContextModule, ContextService } from '../../src/index.js';
import { commentKnex, commentKysely, commentTypeOrm, type SqlCommentOptions } from '../../src/integrations/sql/index.js';
import { requireBroker } from '../utils/brokers.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { commentOf, INBOUND_TRACEPARENT, MARIA, PG, SqlContext, TRACE_ID, traceOf } from './helpers.js';

/**
 * Kysely, Knex and TypeORM on the real PostgreSQL and MariaDB: plain statements, the query
 * builder and transactions carry the request's comment, read back from the server.
 */


const PG_ECHO = 'SELECT current_query() AS q';
const MARIA_ECHO = 'SELECT info AS q FROM information_schema.PROCESSLIST WHERE id = CONNECTION_ID()';
const OPTIONS: SqlCommentOptions = { fields: ['tenant'] };

type Db = 'postgres' | 'mariadb';

/** One ORM on one database, as the tests drive it. */
interface Orm {
  /** A raw statement echoing its own text. */
  echo(): Promise<string>;
  /** The same through the ORM's query builder. */
  built(): Promise<string>;
  /** Two echoes inside one transaction. */
  transaction(): Promise<string[]>;
  close(): Promise<void>;
}

type Row = { q: string };
const q = (rows: unknown): string => (rows as Row[])[0]!.q;
const appName = (orm: string) => `sql-orm-${orm}-${process.pid}`;

function kyselyOn(db: Db): Orm {
  type Schema = { [table: string]: Record<string, unknown> };
  const dialect =
    db === 'postgres'
      ? new PostgresDialect({ pool: new pg.Pool({ ...PG, max: 1, application_name: appName('kysely') }) })
      : new MysqlDialect({ pool: mysql.createPool({ ...MARIA, connectionLimit: 2 }) });
  const kysely = new Kysely<Schema>({ dialect: commentKysely(dialect, OPTIONS) });
  const echoSql = sql.raw<Row>(db === 'postgres' ? PG_ECHO : MARIA_ECHO);
  return {
    echo: async () => (await echoSql.execute(kysely)).rows[0]!.q,
    built: async () =>
      db === 'postgres'
        ? (await kysely.selectNoFrom(sql<string>`current_query()`.as('q')).executeTakeFirstOrThrow()).q
        : String(
            (
              await kysely
                .selectFrom('information_schema.PROCESSLIST')
                .select(sql<string>`info`.as('q'))
                .where('id', '=', sql<number>`CONNECTION_ID()`)
                .executeTakeFirstOrThrow()
            ).q,
          ),
    transaction: () => kysely.transaction().execute(async (trx) => [(await echoSql.execute(trx)).rows[0]!.q, (await echoSql.execute(trx)).rows[0]!.q]),
    close: () => kysely.destroy(),
  };
}

function knexOn(db: Db): Orm {
  const knex: Knex = commentKnex(
    knexFactory(
      db === 'postgres'
        ? { client: 'pg', connection: { ...PG, application_name: appName('knex') }, pool: { min: 0, max: 1 } }
        : { client: 'mysql2', connection: { ...MARIA }, pool: { min: 0, max: 2 } },
    ),
    OPTIONS,
  );
  const raw = async (runner: Knex | Knex.Transaction): Promise<string> => {
    const result: unknown = await runner.raw(db === 'postgres' ? PG_ECHO : MARIA_ECHO);
    return db === 'postgres' ? q((result as { rows: unknown }).rows) : q((result as unknown[])[0]);
  };
  return {
    echo: () => raw(knex),
    built: async () =>
      db === 'postgres'
        ? q(await knex.select(knex.raw('current_query() AS q')))
        : q(await knex.select('info AS q').from('information_schema.PROCESSLIST').where('id', knex.raw('CONNECTION_ID()'))),
    transaction: () => knex.transaction(async (trx) => [await raw(trx), await raw(trx)]),
    close: () => knex.destroy(),
  };
}

function typeOrmOn(db: Db): Orm {
  const dataSource = commentTypeOrm(
    db === 'postgres'
      ? new DataSource({ type: 'postgres', host: PG.host, port: PG.port, username: PG.user, database: PG.database, poolSize: 1, applicationName: appName('typeorm') })
      : new DataSource({ type: 'mariadb', host: MARIA.host, port: MARIA.port, username: MARIA.user, database: MARIA.database, poolSize: 2 }),
    OPTIONS,
  );
  const echo = db === 'postgres' ? PG_ECHO : MARIA_ECHO;
  let ready: Promise<unknown> | undefined;
  const init = () => (ready ??= dataSource.initialize());
  return {
    echo: async () => {
      await init();
      return q(await dataSource.query(echo));
    },
    built: async () => {
      await init();
      const builder =
        db === 'postgres'
          ? dataSource.createQueryBuilder().select('current_query()', 'q').from('pg_catalog.pg_database', 'd').where('d.datname = current_database()')
          : dataSource.createQueryBuilder().select('info', 'q').from('information_schema.PROCESSLIST', 'p').where('id = CONNECTION_ID()');
      return String(((await builder.getRawOne()) as Row).q);
    },
    transaction: async () => {
      await init();
      return dataSource.transaction(async (manager) => [q(await manager.query(echo)), q(await manager.query(echo))]);
    },
    close: async () => {
      if (dataSource.isInitialized) await dataSource.destroy();
    },
  };
}

const ORM = Symbol('orm');

@Controller('orm')
class OrmController {
  constructor(
    @Inject(ORM) private readonly orm: Orm,
    private readonly context: ContextService<SqlContext>,
  ) {}

  @Get('run')
  async run(@Headers('x-tenant') tenant?: string): Promise<{ echo: string; built: string; transaction: string[] }> {
    if (tenant !== undefined) this.context.get().tenant = tenant;
    return { echo: await this.orm.echo(), built: await this.orm.built(), transaction: await this.orm.transaction() };
  }
}

const cases: [string, Db, (db: Db) => Orm][] = [
  ['kysely', 'postgres', kyselyOn],
  ['kysely', 'mariadb', kyselyOn],
  ['knex', 'postgres', knexOn],
  ['knex', 'mariadb', knexOn],
  ['typeorm', 'postgres', typeOrmOn],
  ['typeorm', 'mariadb', typeOrmOn],
];

beforeAll(async () => {
  await requireBroker('postgres');
  await requireBroker('mariadb');
});

describe.each(cases)('%s on %s', (name, db, make) => {
  let app: INestApplication;
  let orm: Orm;
  beforeAll(async () => {
    orm = make(db);
    @Module({ imports: [ContextModule.forRoot(SqlContext)], controllers: [OrmController], providers: [{ provide: ORM, useValue: orm }] })
    class OrmModule {}
    app = await bootApp(OrmModule, platforms[0][1]);
  });
  afterAll(async () => {
    await app.close();
    await orm.close();
  });

  it('statements, the query builder and transactions carry the request’s comment', async () => {
    const id = `${name}-${db}-1`;
    const res = await request(app.getHttpServer()).get('/orm/run').set('x-request-id', id).set('traceparent', INBOUND_TRACEPARENT).set('x-tenant', 'acme').expect(200);
    const { echo, built, transaction } = res.body as { echo: string; built: string; transaction: string[] };
    const texts = [echo, built, ...transaction];
    const parents = new Set<string>();
    for (const text of texts) {
      const comment = commentOf(text);
      expect(Object.keys(comment).sort()).toEqual(['correlation_id', 'tenant', 'traceparent']);
      expect(comment.correlation_id).toBe(id);
      expect(comment.tenant).toBe('acme');
      expect(traceOf(comment.traceparent).traceId).toBe(TRACE_ID);
      parents.add(traceOf(comment.traceparent).parentId);
    }
    expect(parents.size).toBe(texts.length);
    if (db === 'postgres') {
      // The pool's only connection ran the transaction's COMMIT last: pg_stat_activity still shows it.
      const observer = new pg.Client(PG);
      await observer.connect();
      try {
        const { rows } = await observer.query<{ query: string }>('SELECT query FROM pg_stat_activity WHERE application_name = $1', [appName(name)]);
        expect(rows).toHaveLength(1);
        expect(rows[0]!.query).toMatch(/^COMMIT/i);
        expect(commentOf(rows[0]!.query).correlation_id).toBe(id);
      } finally {
        await observer.end();
      }
    }
  });

  it('leaves statements outside any context untouched', async () => {
    expect(await orm.echo()).toBe(db === 'postgres' ? PG_ECHO : MARIA_ECHO);
  });
});
