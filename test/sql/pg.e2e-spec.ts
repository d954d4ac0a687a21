import 'reflect-metadata';
import { AsyncLocalStorage } from 'node:async_hooks';
import { Body, Controller, Get, Headers, Inject, Module, Post, Query, type INestApplication } from '@nestjs/common';
import fc from 'fast-check';
import pg from 'pg';
import request from 'supertest';
import { ContextModule, ContextService } from '../../src/index.js';
import { commentPg } from '../../src/integrations/sql/index.js';
import { requireBroker } from '../utils/brokers.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { commentOf, crossTalk, expectedValue, INBOUND_PARENT, INBOUND_TRACEPARENT, parseComment, PG, SqlContext, TRACE_ID, traceOf } from './helpers.js';

/**
 * node-postgres against the real PostgreSQL: the statement text is read back from the server
 * (`current_query()` echoes a statement's own text, `pg_stat_activity` shows another backend's).
 */


const POOL = Symbol('pool');
const SHARED = Symbol('shared client holder');
const ECHO = 'SELECT current_query() AS q';

interface Shared {
  client?: pg.Client;
}

type Q = { q: string };

@Controller('pg')
class PgController {
  constructor(
    @Inject(POOL) private readonly pool: pg.Pool,
    @Inject(SHARED) private readonly shared: Shared,
    private readonly context: ContextService<SqlContext>,
  ) {}

  @Get('echo')
  async echo(@Query('n') n = '3', @Headers('x-tenant') tenant?: string): Promise<string[]> {
    if (tenant !== undefined) this.context.get().tenant = tenant;
    const texts: string[] = [];
    for (let i = 0; i < Number(n); i++) texts.push((await this.pool.query<Q>(ECHO)).rows[0]!.q);
    return texts;
  }

  @Post('hostile')
  async hostile(@Body() body: { tenant: string }): Promise<string> {
    this.context.get().tenant = body.tenant;
    return (await this.pool.query<Q>('SELECT current_query() AS q, $1::text AS v', ['param'])).rows[0]!.q;
  }

  /** A transaction on one pooled client; the COMMIT's text is read from pg_stat_activity by an outside connection. */
  @Get('tx')
  async tx(): Promise<{ inside: string; commit: string }> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('CREATE TEMP TABLE IF NOT EXISTS sql_comment_tx (id text) ON COMMIT DROP');
      await client.query('INSERT INTO sql_comment_tx VALUES ($1)', [this.context.correlationId]);
      const inside = (await client.query<Q>(ECHO)).rows[0]!.q;
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await client.query('COMMIT;');
      const commit = await outsideRead<{ query: string }>('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid]);
      return { inside, commit: commit[0]!.query };
    } finally {
      client.release();
    }
  }

  @Get('sleep')
  async sleep(@Query('marker') marker: string): Promise<void> {
    await this.pool.query(`SELECT pg_sleep(0.3), $1::text AS marker`, [marker]);
  }

  /** A named (prepared) statement: pg prepares it once per connection; it must be sent unchanged. */
  @Get('named')
  async named(): Promise<string[]> {
    const texts: string[] = [];
    for (let i = 0; i < 2; i++) texts.push((await this.pool.query<Q>({ name: 'sql-comment-named-echo', text: ECHO })).rows[0]!.q);
    return texts;
  }

  /** One client, opened by the first request that needs it and reused by every later one. */
  @Get('shared')
  async sharedClient(): Promise<string> {
    if (this.shared.client === undefined) {
      const client = commentPg(new pg.Client(PG), { fields: ['tenant'] });
      await client.connect();
      this.shared.client = client;
    }
    return (await this.shared.client.query<Q>(ECHO)).rows[0]!.q;
  }
}

/** A plain connection of the test's own (never commented). */
async function outsideRead<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client(PG);
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

function moduleWith(pool: pg.Pool, shared: Shared) {
  @Module({
    imports: [ContextModule.forRoot(SqlContext)],
    controllers: [PgController],
    providers: [
      { provide: POOL, useValue: pool },
      { provide: SHARED, useValue: shared },
    ],
  })
  class PgModule {}
  return PgModule;
}

function newPool(max: number): pg.Pool {
  return commentPg(new pg.Pool({ ...PG, max, application_name: 'nestjs-context-sql-test' }), { fields: ['tenant'] });
}

beforeAll(async () => {
  await requireBroker('postgres');
});

describe.each(platforms)('pg: statements carry the request context (%s)', (name, makeAdapter) => {
  let app: INestApplication;
  let pool: pg.Pool;
  const shared: Shared = {};
  beforeAll(async () => {
    pool = newPool(4);
    app = await bootApp(moduleWith(pool, shared), makeAdapter);
  });
  afterAll(async () => {
    await app.close();
    await shared.client?.end();
    await pool.end();
  });

  it('carries the correlation id, the trace id with a fresh parent id per statement, and declared fields only', async () => {
    const res = await request(app.getHttpServer())
      .get('/pg/echo?n=3')
      .set('x-request-id', `pg-${name}-1`)
      .set('traceparent', INBOUND_TRACEPARENT)
      .set('x-tenant', 'acme corp/eu')
      .expect(200);
    const texts = res.body as string[];
    expect(texts).toHaveLength(3);
    const parents = new Set<string>();
    for (const text of texts) {
      expect(text.startsWith(`${ECHO} /*`)).toBe(true);
      const comment = commentOf(text);
      expect(Object.keys(comment).sort()).toEqual(['correlation_id', 'tenant', 'traceparent']);
      expect(comment.correlation_id).toBe(`pg-${name}-1`);
      expect(comment.tenant).toBe('acme corp/eu');
      const trace = traceOf(comment.traceparent);
      expect(trace.traceId).toBe(TRACE_ID);
      expect(trace.parentId).not.toBe(INBOUND_PARENT);
      parents.add(trace.parentId);
      expect(text).not.toContain('undeclared-secret');
    }
    expect(parents.size).toBe(3);
  });

  it('leaves statements outside any context untouched', async () => {
    const { rows } = await pool.query<Q>(ECHO);
    expect(rows[0]!.q).toBe(ECHO);
  });
});

describe('pg: transactions, pools, reused connections, prepared statements (express)', () => {
  let app: INestApplication;
  let pool: pg.Pool;
  const shared: Shared = {};
  let base: string;
  beforeAll(async () => {
    pool = newPool(4);
    app = await bootApp(moduleWith(pool, shared), platforms[0][1]);
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app.close();
    await shared.client?.end();
    await pool.end();
  });

  it('comments every statement of a transaction, COMMIT included (read from pg_stat_activity)', async () => {
    const res = await request(app.getHttpServer()).get('/pg/tx').set('x-request-id', 'pg-tx-1').set('traceparent', INBOUND_TRACEPARENT).expect(200);
    const { inside, commit } = res.body as { inside: string; commit: string };
    expect(commentOf(inside).correlation_id).toBe('pg-tx-1');
    // The comment goes before the trailing semicolon.
    expect(commit).toMatch(/^COMMIT \/\*.*\*\/;$/);
    expect(commentOf(commit).correlation_id).toBe('pg-tx-1');
    expect(traceOf(commentOf(commit).traceparent).traceId).toBe(TRACE_ID);
  });

  it('shows the comment in pg_stat_activity while the statement runs', async () => {
    const marker = `marker-${process.pid}-${Date.now()}`;
    const pending = request(app.getHttpServer()).get(`/pg/sleep?marker=${marker}`).set('x-request-id', 'pg-activity-1').expect(200);
    const observer = new pg.Client(PG);
    await observer.connect();
    let seen: string | undefined;
    let finished = false;
    const done = pending.then(() => {
      finished = true;
    });
    try {
      // Poll until the running statement shows up; the request ending first fails the test below.
      while (seen === undefined && !finished) {
        const { rows } = await observer.query<{ query: string }>(
          `SELECT query FROM pg_stat_activity WHERE state = 'active' AND application_name = 'nestjs-context-sql-test' AND query LIKE 'SELECT pg_sleep%'`,
        );
        seen = rows[0]?.query;
      }
    } finally {
      await done;
      await observer.end();
    }
    expect(seen).toBeDefined();
    expect(commentOf(seen!).correlation_id).toBe('pg-activity-1');
  });

  it('200 concurrent requests over a pool of 4: every statement carries its own request id', async () => {
    expect(await crossTalk(`${base}/pg/echo`, 'pg-pool')).toEqual([]);
    expect(pool.totalCount).toBeLessThanOrEqual(4);
  });

  it('a connection opened inside one request carries the next request’s context when reused', async () => {
    const first = await request(app.getHttpServer()).get('/pg/shared').set('x-request-id', 'pg-shared-1').expect(200);
    const second = await request(app.getHttpServer()).get('/pg/shared').set('x-request-id', 'pg-shared-2').expect(200);
    expect(commentOf(first.text).correlation_id).toBe('pg-shared-1');
    expect(commentOf(second.text).correlation_id).toBe('pg-shared-2');
  });

  it('a pooled connection used by one request and then by the next carries each one’s id', async () => {
    const single = newPool(1);
    try {
      const app2 = await bootApp(moduleWith(single, {}), platforms[0][1]);
      try {
        const a = await request(app2.getHttpServer()).get('/pg/echo?n=1').set('x-request-id', 'pg-reuse-a').expect(200);
        const b = await request(app2.getHttpServer()).get('/pg/echo?n=1').set('x-request-id', 'pg-reuse-b').expect(200);
        expect(commentOf((a.body as string[])[0]!).correlation_id).toBe('pg-reuse-a');
        expect(commentOf((b.body as string[])[0]!).correlation_id).toBe('pg-reuse-b');
        expect(single.totalCount).toBe(1);
      } finally {
        await app2.close();
      }
    } finally {
      await single.end();
    }
  });

  it('sends named (prepared) statements unchanged, so pg can reuse them across requests', async () => {
    for (const id of ['pg-named-1', 'pg-named-2']) {
      const res = await request(app.getHttpServer()).get('/pg/named').set('x-request-id', id).expect(200);
      expect(res.body).toEqual([ECHO, ECHO]);
    }
  });

  it('a manual context (contextService.run with headers) comments like a request', async () => {
    const service = app.get<ContextService<SqlContext>>(ContextService);
    const text = await service.run(async () => (await pool.query<Q>(ECHO)).rows[0]!.q, {
      headers: { 'x-request-id': 'pg-manual-1', traceparent: INBOUND_TRACEPARENT },
      trusted: true,
    });
    expect(commentOf(text).correlation_id).toBe('pg-manual-1');
    expect(traceOf(commentOf(text).traceparent).traceId).toBe(TRACE_ID);
  });

  it('pool.connect(callback) waiting for a busy pool calls back in its caller’s context, not the releaser’s', async () => {
    const service = app.get<ContextService<SqlContext>>(ContextService);
    const single = newPool(1);
    try {
      const held = await single.connect(); // the pool's only client, outside any context
      const waited = service.run(
        () =>
          new Promise<string>((resolve, reject) => {
            single.connect((error, client, release) => {
              if (error !== undefined || client === undefined) return reject(error ?? new Error('no client'));
              client.query<Q>(ECHO).then(
                (result) => (release(), resolve(result.rows[0]!.q)),
                (queryError: unknown) => (release(), reject(queryError)),
              );
            });
          }),
        { headers: { 'x-request-id': 'pg-waiter-1' }, trusted: true },
      );
      // The release, in another context, hands the client to the waiting callback.
      await service.run(async () => held.release(), { headers: { 'x-request-id': 'pg-releaser-1' }, trusted: true });
      expect(commentOf(await waited).correlation_id).toBe('pg-waiter-1');
    } finally {
      await single.end();
    }
  });

  it('pool.query() waiting for a busy pool: a request’s statement keeps its own id, a statement outside any context stays unchanged', async () => {
    const service = app.get<ContextService<SqlContext>>(ContextService);
    const single = newPool(1);
    try {
      // Another AsyncLocalStorage (a tracer's, say): where pg runs the queued statement, it must see the caller's store too.
      const other = new AsyncLocalStorage<string>();
      for (const caller of ['pg-queued-1', undefined]) {
        const held = await single.connect(); // the pool's only client (patched: it came from pool.connect())
        const seen: (string | undefined)[] = [];
        const query = held.query;
        held.query = function (this: pg.PoolClient, ...args: unknown[]) {
          seen.push(other.getStore());
          return (query as (...a: unknown[]) => unknown).apply(this, args);
        } as typeof held.query;
        const queued = other.run(`caller:${caller}`, () =>
          caller === undefined
            ? single.query<Q>(ECHO)
            : service.run(() => single.query<Q>(ECHO), { headers: { 'x-request-id': caller }, trusted: true }),
        );
        // The release, in another request's context, hands the client to the queued statement.
        await other.run('releaser', () => service.run(async () => held.release(), { headers: { 'x-request-id': 'pg-releaser-2' }, trusted: true }));
        const text = (await queued).rows[0]!.q;
        held.query = query;
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
      fc.constantFrom("'; DROP TABLE x; --", '*/ SELECT 1; /*', "\\'", '\u0000', 'a\nb\r\nc', '$1 ? :name %s', '/*!50000 SELECT 1*/', '😀'.repeat(80)),
    );
    await fc.assert(
      fc.asyncProperty(hostile, async (tenant) => {
        const res = await request(app.getHttpServer()).post('/pg/hostile').set('x-request-id', 'pg-hostile').send({ tenant }).expect(201);
        const text = res.text;
        expect(text.startsWith('SELECT current_query() AS q, $1::text AS v /*')).toBe(true);
        const comment = parseComment(text)!;
        const expected = expectedValue(tenant, 128);
        if (expected === '') expect(comment.tenant).toBeUndefined();
        else expect(comment.tenant).toBe(expected);
        expect(comment.correlation_id).toBe('pg-hostile');
      }),
      { numRuns: 60 },
    );
  });
});
