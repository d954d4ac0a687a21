import 'reflect-metadata';
import { Body, Controller, Inject, Injectable, Module, Post, type INestApplication } from '@nestjs/common';
import { BullModule, InjectQueue, OnWorkerEvent, Processor, WorkerHost } from '@nestjs/bullmq';
import { Test } from '@nestjs/testing';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Queue, Worker, type Job } from 'bullmq';
import request from 'supertest';
import { ContextModule, ContextService, currentContext, getOutboundHeaders } from 'nestjs-context';
import { activeContext as getCurrentContext } from '../utils/internals.js';
import {
  ContextBullModule,
  JOB_CONTEXT_OPTION,
  contextProcessor,
  propagateContext,
  readJobContext,
  contextJobOptions,
} from 'nestjs-context/bullmq';
import { MyContext } from '../fixtures/app-context.js';
import { Log } from './log.js';
import { brokers, requireBroker, uniqueName } from '../utils/brokers.js';

/** Where the BullMQ suites expect Redis. */
const REDIS = { host: brokers.redis.host, port: brokers.redis.port };

interface JobData {
  key: string;
  expect?: string;
  failOnce?: boolean;
  sleep?: number;
  payload?: unknown;
}

interface Seen {
  key: string;
  attempt: number;
  data: unknown;
  serviceId: string | undefined;
  currentId: string;
  sameObject: boolean;
  traceId: string | undefined;
  spanId: string | undefined;
  parentId: string | undefined;
  remote: boolean | undefined;
  baggage: string[];
  userId: string | undefined;
}

const QUEUE = uniqueName('jobs');
const processed = new Log<Seen>();
const failed = new Log<{ key: string; id: string | undefined; serviceId: string | undefined }>();
const completed = new Log<{ key: string; id: string | undefined; serviceId: string | undefined }>();

@Processor(QUEUE, { concurrency: 50 })
class JobsProcessor extends WorkerHost {
  constructor(private readonly context: ContextService<MyContext>) {
    super();
  }

  async process(job: Job<JobData>): Promise<string> {
    const data = job.data;
    if (data.sleep) await new Promise((r) => setTimeout(r, data.sleep));
    const ctx = this.context.get();
    const trace = this.context.trace;
    processed.push({
      key: data.key,
      attempt: job.attemptsMade,
      data,
      serviceId: this.context.correlationId,
      currentId: currentContext.correlationId as string,
      sameObject: getCurrentContext() === ctx,
      traceId: trace?.traceId,
      spanId: trace?.spanId,
      parentId: trace?.parentId,
      remote: trace?.remote,
      baggage: this.context.baggage.map((m) => `${m.key}=${m.value}`),
      userId: ctx.userId,
    });
    if (data.failOnce && job.attemptsMade === 0) throw new Error('first attempt fails on purpose');
    await new Promise((r) => setTimeout(r, 1));
    if (this.context.correlationId !== ctx.correlationId) throw new Error('context changed across an await');
    return ctx.correlationId;
  }

  @OnWorkerEvent('failed')
  onFailed(job: Job<JobData> | undefined): void {
    if (job !== undefined) failed.push({ key: job.data.key, id: undefined, serviceId: this.context.correlationId });
  }

  @OnWorkerEvent('completed')
  onCompleted(job: Job<JobData>): void {
    completed.push({ key: job.data.key, id: job.returnvalue as string | undefined, serviceId: this.context.correlationId });
  }
}

const SCOPED_QUEUE = uniqueName('scoped');
const scoped = new Log<{ key: string; injected: string; service: string | undefined; same: boolean }>();

/** Injecting MyContext makes the processor request-scoped: Nest builds it per job. */
@Processor(SCOPED_QUEUE)
class ScopedProcessor extends WorkerHost {
  constructor(
    private readonly ctx: MyContext,
    private readonly context: ContextService<MyContext>,
  ) {
    super();
  }

  async process(job: Job<JobData>): Promise<void> {
    scoped.push({ key: job.data.key, injected: this.ctx.correlationId, service: this.context.correlationId, same: this.context.get() === this.ctx });
  }
}

@Injectable()
class Producer {
  constructor(
    @InjectQueue(QUEUE) readonly queue: Queue,
    @InjectQueue(SCOPED_QUEUE) readonly scopedQueue: Queue,
    readonly context: ContextService<MyContext>,
  ) {}
}

@Controller('jobs')
class JobsController {
  constructor(
    private readonly producer: Producer,
    @Inject(ContextService) private readonly context: ContextService<MyContext>,
  ) {}

  @Post()
  async add(@Body() body: { key: string; userId?: string }) {
    this.context.get().userId = body.userId;
    const headers = getOutboundHeaders();
    await this.producer.queue.add('http', { key: body.key, payload: { a: 1 } });
    return { correlationId: this.context.correlationId, trace: this.context.trace, headers };
  }
}

@Module({
  imports: [
    ContextModule.forRoot(MyContext, { baggage: { fields: { userId: 'user.id' } } }),
    BullModule.forRoot({ connection: REDIS }),
    BullModule.registerQueue({ name: QUEUE }, { name: SCOPED_QUEUE }),
    ContextBullModule.forRoot(),
  ],
  controllers: [JobsController],
  providers: [JobsProcessor, ScopedProcessor, Producer],
})
class AppModule {}

describe('BullMQ: jobs carry the context', () => {
  let app: INestApplication;
  let producer: Producer;
  let plain: Queue;

  beforeAll(async () => {
    await requireBroker('redis');
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
    await app.init();
    producer = app.get(Producer);
    plain = new Queue(QUEUE, { connection: REDIS });
  });

  afterAll(async () => {
    await plain?.obliterate({ force: true }).catch(() => undefined);
    await plain?.close();
    await producer?.scopedQueue.obliterate({ force: true }).catch(() => undefined);
    await app?.close();
  });

  it('a missing Redis fails the suite with a message naming it and its start command (never a silent skip)', async () => {
    await expect(requireBroker({ ...brokers.redis, port: 1 })).rejects.toThrow(
      /Redis is not reachable on 127\.0\.0\.1:1 .*start it with: redis-server --daemonize yes --bind 127\.0\.0\.1 -::1 --port 6379/,
    );
  });

  it('HTTP request → job → processor sees the same correlation and trace id, its own span, the original data', async () => {
    const res = await request(app.getHttpServer())
      .post('/jobs')
      .set('x-request-id', 'req-http-1')
      .set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')
      .set('tracestate', 'vendor=abc')
      .send({ key: 'http-1', userId: 'u-7' })
      .expect(201);
    const [seen] = await processed.wait('http-1');
    expect(seen!.serviceId).toBe('req-http-1');
    expect(seen!.currentId).toBe('req-http-1');
    expect(seen!.sameObject).toBe(true);
    expect(seen!.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(seen!.remote).toBe(true);
    expect(seen!.spanId).not.toBe(res.body.trace.spanId);
    expect(seen!.parentId).not.toBe(res.body.trace.spanId); // a fresh parent id per job, like per outgoing call
    expect(seen!.parentId).toMatch(/^[0-9a-f]{16}$/);
    expect(seen!.baggage).toEqual(['user.id=u-7']);
    expect(seen!.userId).toBe('u-7'); // declared baggage field filled from the job's baggage
    expect(seen!.data).toEqual({ key: 'http-1', payload: { a: 1 } }); // the user's data, untouched
    const done = await completed.wait('http-1');
    expect(done[0]!.serviceId).toBe('req-http-1'); // @OnWorkerEvent runs in the job's context too
  });

  it('stores the metadata in job options (tracestate included), never in job data', async () => {
    const job = await app.get(ContextService).run(() => producer.queue.add('meta', { key: 'meta-1' }, { delay: 60_000 }), {
      correlationId: 'meta-id',
    });
    const stored = await plain.getJob(job.id!);
    expect(stored!.data).toEqual({ key: 'meta-1' });
    const carrier = readJobContext(stored!);
    expect(carrier!['x-request-id']).toBe('meta-id');
    expect(carrier!.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
    await stored!.remove();
    const viaHttp = await request(app.getHttpServer())
      .post('/jobs')
      .set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')
      .set('tracestate', 'vendor=abc')
      .send({ key: 'meta-2' })
      .expect(201);
    expect(viaHttp.body.headers.tracestate).toBe('vendor=abc');
    const [seen] = await processed.wait('meta-2');
    expect(seen!.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
  });

  it('a retried job keeps the context on every attempt (same ids, a new span per attempt)', async () => {
    const service = app.get<ContextService<MyContext>>(ContextService);
    await service.run(() => producer.queue.add('retry', { key: 'retry-1', failOnce: true }, { attempts: 2 }), {
      correlationId: 'retry-id',
    });
    const attempts = await processed.wait('retry-1', 2);
    expect(attempts.map((a) => a.attempt)).toEqual([0, 1]);
    expect(attempts.map((a) => a.serviceId)).toEqual(['retry-id', 'retry-id']);
    expect(attempts[0]!.traceId).toBe(attempts[1]!.traceId);
    expect(attempts[0]!.spanId).not.toBe(attempts[1]!.spanId);
    const done = await completed.wait('retry-1');
    expect(done[0]!.id).toBe('retry-id');
    const [fail] = await failed.wait('retry-1');
    expect(fail!.serviceId).toBe('retry-id'); // @OnWorkerEvent('failed') of the first attempt
  });

  it('a delayed job keeps the context', async () => {
    const service = app.get<ContextService<MyContext>>(ContextService);
    const started = Date.now();
    const traceId = await service.run(async () => {
      await producer.queue.add('delayed', { key: 'delayed-1' }, { delay: 400 });
      return service.trace!.traceId;
    }, { correlationId: 'delayed-id' });
    const [seen] = await processed.wait('delayed-1');
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(seen!.serviceId).toBe('delayed-id');
    expect(seen!.traceId).toBe(traceId);
  });

  it('addBulk carries the context of the caller', async () => {
    const service = app.get<ContextService<MyContext>>(ContextService);
    await service.run(
      () => producer.queue.addBulk([{ name: 'b', data: { key: 'bulk-1' } }, { name: 'b', data: { key: 'bulk-2' }, opts: { priority: 1 } }]),
      { correlationId: 'bulk-id' },
    );
    const [a] = await processed.wait('bulk-1');
    const [b] = await processed.wait('bulk-2');
    expect([a!.serviceId, b!.serviceId]).toEqual(['bulk-id', 'bulk-id']);
  });

  it('200 jobs in flight at once: every processor sees its own producer context, no cross-talk', async () => {
    const service = app.get<ContextService<MyContext>>(ContextService);
    const n = 200;
    const started = Date.now();
    const traces = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        service.run(async () => {
          await producer.queue.add('many', { key: `many-${i}`, expect: `many-id-${i}`, sleep: 5 + (i % 7) * 3 });
          return service.trace!.traceId;
        }, { correlationId: `many-id-${i}` }),
      ),
    );
    const seen = await Promise.all(Array.from({ length: n }, (_, i) => processed.wait(`many-${i}`)));
    const elapsed = Date.now() - started;
    for (let i = 0; i < n; i++) {
      const s = seen[i]![0]!;
      expect(s.serviceId).toBe(`many-id-${i}`);
      expect(s.currentId).toBe(`many-id-${i}`);
      expect(s.traceId).toBe(traces[i]);
    }
    expect(new Set(seen.map((s) => s[0]!.spanId)).size).toBe(n);
    process.stdout.write(`[bullmq] ${n} jobs added and processed in ${elapsed} ms\n`);
  });

  it('a job added outside the library (plain bullmq Queue, no context) gets a fresh context', async () => {
    await plain.add('plain', { key: 'plain-1' });
    await plain.add('plain', { key: 'plain-2' });
    const [a] = await processed.wait('plain-1');
    const [b] = await processed.wait('plain-2');
    expect(a!.serviceId).toMatch(/^[0-9a-f-]{36}$/);
    expect(b!.serviceId).toMatch(/^[0-9a-f-]{36}$/);
    expect(a!.serviceId).not.toBe(b!.serviceId);
    expect(a!.remote).toBe(false);
    expect(a!.sameObject).toBe(true);
  });

  it('malformed metadata is ignored: a fresh context, the job still runs', async () => {
    const bad: unknown[] = [
      'not-an-object',
      42,
      ['x'],
      {},
      { 'x-request-id': 5 },
      { 'x-request-id': 'x'.repeat(9000) },
      { 'x-request-id': 'bad id !!', traceparent: 'zz-not-a-traceparent', baggage: '%%%,=' },
    ];
    await Promise.all(bad.map((meta, i) => plain.add('bad', { key: `bad-${i}` }, { [JOB_CONTEXT_OPTION]: meta } as never)));
    for (let i = 0; i < bad.length; i++) {
      const [seen] = await processed.wait(`bad-${i}`);
      expect(seen!.serviceId).toMatch(/^[0-9a-f-]{36}$/);
      expect(seen!.remote).toBe(false);
      expect(seen!.baggage).toEqual([]);
    }
  });

  it('a request-scoped processor gets the job\'s context injected as MyContext (same object as ContextService)', async () => {
    const service = app.get<ContextService<MyContext>>(ContextService);
    await service.run(() => producer.scopedQueue.add('s', { key: 'scoped-1' }), { correlationId: 'scoped-id' });
    await producer.scopedQueue.add('s', { key: 'scoped-2' });
    const [a] = await scoped.wait('scoped-1');
    const [b] = await scoped.wait('scoped-2');
    expect(a).toEqual({ key: 'scoped-1', injected: 'scoped-id', service: 'scoped-id', same: true });
    expect(b!.injected).toBe(b!.service);
    expect(b!.same).toBe(true);
  });

  it('contextJobOptions() adds the metadata for producers that do not use a registered queue', async () => {
    const service = app.get<ContextService<MyContext>>(ContextService);
    expect(contextJobOptions({ attempts: 1 })).toEqual({ attempts: 1 });
    await service.run(() => plain.add('manual', { key: 'manual-1' }, contextJobOptions({ attempts: 1 })), { correlationId: 'manual-id' });
    const [seen] = await processed.wait('manual-1');
    expect(seen!.serviceId).toBe('manual-id');
  });

  it('contextProcessor() and propagateContext() connect a plain Worker and Queue created outside Nest', async () => {
    const name = uniqueName('plain-worker');
    const queue = propagateContext(new Queue(name, { connection: REDIS }));
    const seen = new Log<{ key: string; id: string | undefined; traceId: string | undefined }>();
    const service = app.get<ContextService<MyContext>>(ContextService);
    const worker = new Worker(
      name,
      contextProcessor(async (job: Job<{ key: string }>) => {
        await new Promise((r) => setTimeout(r, 2));
        seen.push({ key: job.data.key, id: service.correlationId, traceId: service.trace?.traceId });
      }),
      { connection: REDIS, concurrency: 10 },
    );
    try {
      const traceId = await service.run(async () => {
        await queue.add('x', { key: 'pw-1' });
        return service.trace!.traceId;
      }, { correlationId: 'plain-worker-id' });
      await queue.add('x', { key: 'pw-2' });
      const [a] = await seen.wait('pw-1');
      const [b] = await seen.wait('pw-2');
      expect(a).toEqual({ key: 'pw-1', id: 'plain-worker-id', traceId });
      expect(b!.id).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
    }
  });
});

const UNTRUSTED_QUEUE = uniqueName('untrusted');
const untrustedSeen = new Log<{ key: string; id: string | undefined }>();

@Processor(UNTRUSTED_QUEUE)
class UntrustingProcessor extends WorkerHost {
  constructor(private readonly context: ContextService<MyContext>) {
    super();
  }
  async process(job: Job<{ key: string }>): Promise<void> {
    untrustedSeen.push({ key: job.data.key, id: this.context.correlationId });
  }
}

describe('BullMQ: trustJobMetadata: false, propagate: false', () => {
  it('adds no metadata and ignores the metadata a job carries', async () => {
    await requireBroker('redis');
    const moduleRef = await Test.createTestingModule({
      imports: [
        ContextModule.forRoot(MyContext),
        BullModule.forRoot({ connection: REDIS }),
        BullModule.registerQueue({ name: UNTRUSTED_QUEUE }),
        ContextBullModule.forRoot({ trustJobMetadata: false, propagate: false }),
      ],
      providers: [UntrustingProcessor],
    }).compile();
    const app = await moduleRef.init();
    const queue = app.get<Queue>(`BullQueue_${UNTRUSTED_QUEUE}`);
    try {
      const service = app.get<ContextService<MyContext>>(ContextService);
      const job = await service.run(() => queue.add('x', { key: 'u-1' }), { correlationId: 'not-propagated' });
      expect(readJobContext(job)).toBeUndefined();
      await service.run(() => queue.add('x', { key: 'u-2' }, contextJobOptions()), { correlationId: 'not-trusted' });
      const [a] = await untrustedSeen.wait('u-1');
      const [b] = await untrustedSeen.wait('u-2');
      expect(a!.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(b!.id).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await app.close();
    }
  });
});

const SHARED_QUEUE = uniqueName('shared');
const sharedSeen = new Log<{ key: string; id: string | undefined; by: SharedProcessor }>();

/** One processor class used by two apps in the same process. */
@Processor(SHARED_QUEUE, { concurrency: 10 })
class SharedProcessor extends WorkerHost {
  constructor(private readonly context: ContextService<MyContext>) {
    super();
  }
  async process(job: Job<{ key: string }>): Promise<void> {
    sharedSeen.push({ key: job.data.key, id: this.context.correlationId, by: this });
  }
}

describe('BullMQ: two apps sharing a processor class', () => {
  it("each app's processor keeps its app's options while the other lives, and after it closes", async () => {
    await requireBroker('redis');
    const build = async (trustJobMetadata: boolean) => {
      const moduleRef = await Test.createTestingModule({
        imports: [
          ContextModule.forRoot(MyContext),
          BullModule.forRoot({ connection: REDIS }),
          BullModule.registerQueue({ name: SHARED_QUEUE }),
          ContextBullModule.forRoot({ trustJobMetadata }),
        ],
        providers: [SharedProcessor],
      }).compile();
      return moduleRef.init();
    };
    const a = await build(false); // ignores job metadata: every job gets a fresh context
    const b = await build(true);
    const procA = a.get(SharedProcessor);
    const procB = b.get(SharedProcessor);
    const queue = new Queue(SHARED_QUEUE, { connection: REDIS });
    const add = (key: string) => queue.add('x', { key }, { [JOB_CONTEXT_OPTION]: { 'x-request-id': `meta-${key}` } } as never);
    let bOpen = true;
    try {
      expect(procA).not.toBe(procB);
      // Both workers consume the queue: whichever runs a job, it must use its own app's options.
      const keys = Array.from({ length: 20 }, (_, i) => `both-${i}`);
      await Promise.all(keys.map(add));
      for (const key of keys) {
        const [seen] = await sharedSeen.wait(key);
        if (seen!.by === procB) expect({ key, id: seen!.id }).toEqual({ key, id: `meta-${key}` });
        else expect({ key, id: seen!.id }).toEqual({ key, id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
      }
      await b.close();
      bOpen = false;
      await add('after-b');
      const [after] = await sharedSeen.wait('after-b');
      expect(after!.by).toBe(procA);
      expect(after!.id).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      if (bOpen) await b.close();
      await a.close();
    }
  });
});
