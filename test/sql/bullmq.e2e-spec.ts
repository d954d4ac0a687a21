import 'reflect-metadata';
import { BullModule, InjectQueue, Processor, WorkerHost } from '@nestjs/bullmq';
import { Controller, Inject, Module, Post, Query, type INestApplication } from '@nestjs/common';
import type { Job, Queue } from 'bullmq';
import pg from 'pg';
import request from 'supertest';
import { ContextModule, type ContextInit } from '../../src/index.js';
import { ContextBullModule } from '../../src/integrations/bullmq/index.js';
import { commentPg } from '../../src/integrations/sql/index.js';
import { Log } from '../entrypoints/log.js';
import { brokers, requireBroker, uniqueName } from '../utils/brokers.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { commentOf, INBOUND_PARENT, INBOUND_TRACEPARENT, PG, TRACE_ID, traceOf } from './helpers.js';

/** A BullMQ processor's statements carry the context the job brought from the request that queued it. */

class Ctx {
  correlationId: string;
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

const QUEUE = uniqueName('sql-jobs');
const POOL = Symbol('pool');
const ran = new Log<{ key: string; text: string }>();

@Processor(QUEUE, { concurrency: 8 })
class SqlProcessor extends WorkerHost {
  constructor(@Inject(POOL) private readonly pool: pg.Pool) {
    super();
  }

  async process(job: Job<{ key: string }>): Promise<void> {
    const { rows } = await this.pool.query<{ q: string }>('SELECT current_query() AS q');
    ran.push({ key: job.data.key, text: rows[0]!.q });
  }
}

@Controller('jobs')
class JobsController {
  constructor(@InjectQueue(QUEUE) private readonly queue: Queue) {}

  @Post()
  async add(@Query('key') key: string): Promise<void> {
    await this.queue.add('query', { key });
  }
}

describe('a BullMQ processor’s statements carry the job’s context', () => {
  let app: INestApplication;
  let pool: pg.Pool;
  let queue: Queue;
  beforeAll(async () => {
    await requireBroker('redis');
    await requireBroker('postgres');
    pool = commentPg(new pg.Pool({ ...PG, max: 2 }));
    @Module({
      imports: [
        ContextModule.forRoot(Ctx),
        BullModule.forRoot({ connection: { host: brokers.redis.host, port: brokers.redis.port } }),
        BullModule.registerQueue({ name: QUEUE }),
        ContextBullModule.forRoot(),
      ],
      controllers: [JobsController],
      providers: [SqlProcessor, { provide: POOL, useValue: pool }],
    })
    class JobsModule {}
    app = await bootApp(JobsModule, platforms[0][1]);
    queue = app.get<Queue>(`BullQueue_${QUEUE}`);
  });
  afterAll(async () => {
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await app?.close();
    await pool?.end();
  });

  it('jobs queued by 20 requests each run their statement with their request’s id and trace', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => `job-${i}`);
    await Promise.all(
      keys.map((key) => request(app.getHttpServer()).post(`/jobs?key=${key}`).set('x-request-id', `sql-${key}`).set('traceparent', INBOUND_TRACEPARENT).expect(201)),
    );
    for (const key of keys) {
      const [entry] = await ran.wait(key);
      const comment = commentOf(entry!.text);
      expect(comment.correlation_id).toBe(`sql-${key}`);
      expect(traceOf(comment.traceparent).traceId).toBe(TRACE_ID);
      expect(traceOf(comment.traceparent).parentId).not.toBe(INBOUND_PARENT);
    }
  });
});
