import 'reflect-metadata';
import { AsyncLocalStorage } from 'node:async_hooks';
import { Body, Controller, Get, Headers, Inject, Module, Post, Query, type INestApplication } from '@nestjs/common';
import fc from 'fast-check';
import mysql from 'mysql2';
import mysqlPromise from 'mysql2/promise';
import request from 'supertest';
import { ContextModule, ContextService } from '../../src/index.js';
import { commentMysql2, type SqlCommentOptions } from '../../src/integrations/sql/index.js';
import { requireBroker } from '../utils/brokers.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { commentOf, crossTalk, expectedValue, INBOUND_PARENT, INBOUND_TRACEPARENT, MARIA, parseComment, SqlContext, TRACE_ID, traceOf } from './helpers.js';

/**
 * mysql2 against the real MariaDB: a statement reads its own text back from
 * `information_schema.PROCESSLIST` (the row of its own connection), another connection reads a
 * running one from there too.
 */


const POOL = Symbol('promise pool');
const CALLBACK_POOL = Symbol('callback pool');
const ECHO = 'SELECT info AS q FROM information_schema.PROCESSLIST WHERE id = CONNECTION_ID()';
type Row = { q: string };

function first(rows: unknown): string {
  return (rows as Row[])[0]!.q;
}

@Controller('my')
class MyController {
  constructor(
    @Inject(POOL) private readonly pool: mysqlPromise.Pool,
    @Inject(CALLBACK_POOL) private readonly callbackPool: mysql.Pool,
    private readonly context: ContextService<SqlContext>,
  ) {}

  @Get('echo')
  async echo(@Query('n') n = '3', @Headers('x-tenant') tenant?: string): Promise<string[]> {
    if (tenant !== undefined) this.context.get().tenant = tenant;
    const texts: string[] = [];
    for (let i = 0; i < Number(n); i++) texts.push(first((await this.pool.query(ECHO))[0]));
    return texts;
  }

  /** The callback API: `pool.query(sql, values, callback)`. */
  @Get('callback')
  callback(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.callbackPool.query(`${ECHO} AND ? = 1`, [1], (error, rows) => (error ? reject(error) : resolve(first(rows))));
    });
  }

  @Post('hostile')
  async hostile(@Body() body: { tenant: string }): Promise<string> {
    this.context.get().tenant = body.tenant;
    return first((await this.pool.query(`${ECHO} AND ? = 'param'`, ['param']))[0]);
  }

  @Get('tx')
  async tx(): Promise<{ inside: string[]; count: number }> {
    const connection = await this.pool.getConnection();
    try {
      await connection.beginTransaction();
      await connection.query('CREATE TEMPORARY TABLE IF NOT EXISTS sql_comment_tx (id VARCHAR(200))');
      await connection.query('INSERT INTO sql_comment_tx VALUES (?)', [this.context.correlationId]);
      const inside = [first((await connection.query(ECHO))[0]), first((await connection.query(`${ECHO};`))[0])];
      const [rows] = await connection.query('SELECT COUNT(*) AS n FROM sql_comment_tx WHERE id = ?', [this.context.correlationId]);
      await connection.commit();
      await connection.query('DROP TEMPORARY TABLE sql_comment_tx');
      return { inside, count: Number((rows as { n: number }[])[0]!.n) };
    } finally {
      connection.release();
    }
  }

  @Get('sleep')
  async sleep(@Query('marker') marker: string): Promise<void> {
    await this.pool.query('SELECT SLEEP(0.3), ? AS marker', [marker]);
  }
}

function moduleWith(pool: mysqlPromise.Pool, callbackPool: mysql.Pool) {
  @Module({
    imports: [ContextModule.forRoot(SqlContext)],
    controllers: [MyController],
    providers: [
      { provide: POOL, useValue: pool },
      { provide: CALLBACK_POOL, useValue: callbackPool },
    ],
  })
  class MyModule {}
  return MyModule;
}

const OPTIONS: SqlCommentOptions = { fields: ['tenant'] };

beforeAll(async () => {
  await requireBroker('mariadb');
});

describe.each(platforms)('mysql2: statements carry the request context (%s)', (name, makeAdapter) => {
  let app: INestApplication;
  let pool: mysqlPromise.Pool;
  let callbackPool: mysql.Pool;
  beforeAll(async () => {
    pool = commentMysql2(mysqlPromise.createPool({ ...MARIA, connectionLimit: 4 }), OPTIONS);
    callbackPool = commentMysql2(mysql.createPool({ ...MARIA, connectionLimit: 2 }), OPTIONS);
    app = await bootApp(moduleWith(pool, callbackPool), makeAdapter);
  });
  afterAll(async () => {
    await app.close();
    await pool.end();
    await new Promise<void>((resolve) => callbackPool.end(() => resolve()));
  });

  it('carries the correlation id, the trace id with a fresh parent id per statement, and declared fields only', async () => {
    const res = await request(app.getHttpServer())
      .get('/my/echo?n=3')
      .set('x-request-id', `my-${name}-1`)
      .set('traceparent', INBOUND_TRACEPARENT)
      .set('x-tenant', "o'reilly & co")
      .expect(200);
    const texts = res.body as string[];
    const parents = new Set<string>();
    for (const text of texts) {
      expect(text.startsWith(`${ECHO} /*`)).toBe(true);
      const comment = commentOf(text);
      expect(Object.keys(comment).sort()).toEqual(['correlation_id', 'tenant', 'traceparent']);
      expect(comment.correlation_id).toBe(`my-${name}-1`);
      expect(comment.tenant).toBe("o'reilly & co");
      const trace = traceOf(comment.traceparent);
      expect(trace.traceId).toBe(TRACE_ID);
      expect(trace.parentId).not.toBe(INBOUND_PARENT);
      parents.add(trace.parentId);
      expect(text).not.toContain('undeclared-secret');
    }
    expect(parents.size).toBe(3);
  });

  it('covers the callback API, with values formatted client-side', async () => {
    const res = await request(app.getHttpServer()).get('/my/callback').set('x-request-id', `my-${name}-cb`).expect(200);
    expect(res.text.startsWith(`${ECHO} AND 1 = 1 /*`)).toBe(true);
    expect(commentOf(res.text).correlation_id).toBe(`my-${name}-cb`);
  });

  it('leaves statements outside any context untouched', async () => {
    expect(first((await pool.query(ECHO))[0])).toBe(ECHO);
  });
});

describe('mysql2: transactions, pools, prepared statements (express)', () => {
  let app: INestApplication;
  let pool: mysqlPromise.Pool;
  let callbackPool: mysql.Pool;
  let base: string;
  beforeAll(async () => {
    pool = commentMysql2(mysqlPromise.createPool({ ...MARIA, connectionLimit: 4 }), OPTIONS);
    callbackPool = commentMysql2(mysql.createPool({ ...MARIA, connectionLimit: 2 }), OPTIONS);
    app = await bootApp(moduleWith(pool, callbackPool), platforms[0][1]);
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app.close();
    await pool.end();
    await new Promise<void>((resolve) => callbackPool.end(() => resolve()));
  });

  it('comments the statements of a transaction on a connection from getConnection()', async () => {
    const res = await request(app.getHttpServer()).get('/my/tx').set('x-request-id', 'my-tx-1').expect(200);
    const { inside, count } = res.body as { inside: string[]; count: number };
    expect(count).toBe(1);
    expect(commentOf(inside[0]!).correlation_id).toBe('my-tx-1');
    // Inserted before the trailing semicolon (which MariaDB leaves out of PROCESSLIST).
    expect(inside[1]).toMatch(/CONNECTION_ID\(\) \/\*.*\*\/$/);
    expect(commentOf(inside[1]!).correlation_id).toBe('my-tx-1');
  });

  it('shows the comment in PROCESSLIST to another connection while the statement runs', async () => {
    const marker = `marker-${process.pid}-${Date.now()}`;
    let finished = false;
    const done = request(app.getHttpServer())
      .get(`/my/sleep?marker=${marker}`)
      .set('x-request-id', 'my-activity-1')
      .expect(200)
      .then(() => {
        finished = true;
      });
    const observer = await mysqlPromise.createConnection(MARIA);
    let seen: string | undefined;
    try {
      while (seen === undefined && !finished) {
        const [rows] = await observer.query(`SELECT info AS q FROM information_schema.PROCESSLIST WHERE info LIKE 'SELECT SLEEP(0.3), %${marker}%'`);
        seen = (rows as Row[])[0]?.q;
      }
    } finally {
      await done;
      await observer.end();
    }
    expect(seen).toBeDefined();
    expect(commentOf(seen!).correlation_id).toBe('my-activity-1');
  });

  it('200 concurrent requests over a pool of 4: every statement carries its own request id', async () => {
    expect(await crossTalk(`${base}/my/echo`, 'my-pool')).toEqual([]);
  });

  it('200 concurrent requests over a callback pool of 2: no cross-talk when connections are handed on', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `my-cb-${i}`);
    const results = await Promise.all(ids.map(async (id) => ({ id, text: await (await fetch(`${base}/my/callback`, { headers: { 'x-request-id': id } })).text() })));
    expect(results.filter(({ id, text }) => commentOf(text).correlation_id !== id)).toEqual([]);
  });

  it('pool.query() waiting for a busy pool: a request’s statement keeps its own id, a statement outside any context stays unchanged', async () => {
    const service = app.get<ContextService<SqlContext>>(ContextService);
    const single = commentMysql2(mysqlPromise.createPool({ ...MARIA, connectionLimit: 1 }), OPTIONS);
    try {
      // Another AsyncLocalStorage (a tracer's, say): where mysql2 runs the queued statement, it must see the caller's store too.
      const other = new AsyncLocalStorage<string>();
      for (const caller of ['my-queued-1', undefined]) {
        const held = await single.getConnection(); // the pool's only connection (patched: it came from getConnection())
        const inner = held.connection as unknown as { query: (...a: unknown[]) => unknown };
        const seen: (string | undefined)[] = [];
        const query = inner.query;
        inner.query = function (this: unknown, ...args: unknown[]) {
          seen.push(other.getStore());
          return query.apply(this, args);
        };
        const queued = other.run(`caller:${caller}`, () =>
          caller === undefined ? single.query(ECHO) : service.run(() => single.query(ECHO), { headers: { 'x-request-id': caller }, trusted: true }),
        );
        // The release, in another request's context, hands the connection to the queued statement.
        await other.run('releaser', () => service.run(async () => held.release(), { headers: { 'x-request-id': 'my-releaser-2' }, trusted: true }));
        const text = first((await queued)[0]);
        inner.query = query;
        if (caller === undefined) expect(text).toBe(ECHO);
        else expect(commentOf(text).correlation_id).toBe(caller);
        expect(seen).toEqual([`caller:${caller}`]);
      }
    } finally {
      await single.end();
    }
  });

  it('hostile field values round-trip through the database and never break out of the comment', async () => {
    const hostile = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 160 }),
      fc.constantFrom("'; DROP TABLE x; --", '*/ SELECT 1; /*', "\\'", '\u0000', 'a\nb\r\nc', '? ?? :name', '/*!50000 SELECT 1*/', '# hash', '😀'.repeat(80)),
    );
    await fc.assert(
      fc.asyncProperty(hostile, async (tenant) => {
        const res = await request(app.getHttpServer()).post('/my/hostile').set('x-request-id', 'my-hostile').send({ tenant }).expect(201);
        expect(res.text.startsWith(`${ECHO} AND 'param' = 'param' /*`)).toBe(true);
        const comment = parseComment(res.text)!;
        const expected = expectedValue(tenant, 128);
        if (expected === '') expect(comment.tenant).toBeUndefined();
        else expect(comment.tenant).toBe(expected);
        expect(comment.correlation_id).toBe('my-hostile');
      }),
      { numRuns: 60 },
    );
  });
});

describe('mysql2: execute() and the server-side statement cache', () => {
  let service: ContextService<SqlContext>;
  let closeApp: () => Promise<void>;
  beforeAll(async () => {
    const dummy = commentMysql2(mysqlPromise.createPool({ ...MARIA, connectionLimit: 1 }));
    const callbackDummy = mysql.createPool({ ...MARIA, connectionLimit: 1 });
    const app = await bootApp(moduleWith(dummy, callbackDummy), platforms[0][1]);
    service = app.get<ContextService<SqlContext>>(ContextService);
    closeApp = async () => {
      await app.close();
      await dummy.end();
      await new Promise<void>((resolve) => callbackDummy.end(() => resolve()));
    };
  });
  afterAll(() => closeApp());

  /** Statements this session prepared on the server so far. */
  async function prepares(connection: mysqlPromise.Connection): Promise<number> {
    const [rows] = await connection.query("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'");
    return Number((rows as { Value: string }[])[0]!.Value);
  }

  const inRequest = <R>(id: string, fn: () => Promise<R>) => service.run(fn, { headers: { 'x-request-id': id }, trusted: true });

  it("by default (prepared: 'skip') sends execute() unchanged: one server-side statement for all requests", async () => {
    const connection = commentMysql2(await mysqlPromise.createConnection(MARIA), OPTIONS);
    try {
      const before = await prepares(connection);
      const texts: string[] = [];
      for (const id of ['my-exec-1', 'my-exec-2', 'my-exec-3']) {
        texts.push(await inRequest(id, async () => first((await connection.execute(`${ECHO} AND ? = 1`, [1]))[0])));
        // query() in the same request is still commented.
        expect(commentOf(await inRequest(id, async () => first((await connection.query(ECHO))[0]))).correlation_id).toBe(id);
      }
      expect(texts).toEqual(Array(3).fill(`${ECHO} AND ? = 1`));
      expect((await prepares(connection)) - before).toBe(1);
    } finally {
      await connection.end();
    }
  });

  it("prepared: 'comment' with traceparent: false comments execute(): one statement per request, reused inside it", async () => {
    const connection = commentMysql2(await mysqlPromise.createConnection(MARIA), { ...OPTIONS, prepared: 'comment', traceparent: false });
    try {
      const before = await prepares(connection);
      for (const id of ['my-exec-a', 'my-exec-b']) {
        const texts = await inRequest(id, async () => {
          const out: string[] = [];
          for (let i = 0; i < 3; i++) out.push(first((await connection.execute(`${ECHO} AND ? = 1`, [1]))[0]));
          return out;
        });
        for (const text of texts) expect(commentOf(text)).toEqual({ correlation_id: id });
      }
      expect((await prepares(connection)) - before).toBe(2);
    } finally {
      await connection.end();
    }
  });
});
