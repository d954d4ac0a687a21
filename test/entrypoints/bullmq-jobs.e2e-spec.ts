import 'reflect-metadata';
import { jest } from '@jest/globals';
import { Inject, Module, type INestApplicationContext, type LoggerService, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BullModule, OnWorkerEvent, Processor, WorkerHost } from '@nestjs/bullmq';
import { Queue, Worker, type Job } from 'bullmq';
import { ContextModule, ContextService, currentContext, type ContextModuleOptions } from 'nestjs-context';
import { ContextBullModule, JOB_CONTEXT_OPTION, contextProcessor, readJobContext, type ContextBullOptions } from 'nestjs-context/bullmq';
import { MyContext } from '../fixtures/app-context.js';
import { brokers, requireBroker, uniqueName } from '../utils/brokers.js';
import { Log, sleep } from './log.js';
import { CaptureLogger } from '../utils/capture-logger.js';
import { DEFAULT_ID } from '../utils/ids.js';

/**
 * BullMQ job metadata: a failing `validate`/`generate` never fails the job, every candidate of a
 * correlation id header counts (an invalid `X-Request-Id` cannot hide a valid `x-request-id`), and
 * `trustJobMetadata: false` is never overridden by another app's trust.
 */

const REDIS = { host: brokers.redis.host, port: brokers.redis.port };
const UUID = DEFAULT_ID;
const APP = Symbol('app label');

interface Ran {
  key: string;
  event: 'process' | 'completed' | 'failed';
  id: string | undefined;
  traceId?: string | undefined;
}

const ran = new Log<Ran>();

/** A processor class of its own queue that records the correlation id of each run and of its worker events. */
function processorFor(queue: string): Type<WorkerHost> {
  @Processor(queue, { stalledInterval: 500 })
  class RecordingProcessor extends WorkerHost {
    constructor(private readonly context: ContextService<MyContext>) {
      super();
    }

    async process(job: Job<{ key: string }>): Promise<void> {
      ran.push({ key: `process:${job.data.key}`, event: 'process', id: this.context.correlationId, traceId: this.context.trace?.traceId });
    }

    @OnWorkerEvent('completed')
    completed(job: Job<{ key: string }>): void {
      ran.push({ key: `completed:${job.data.key}`, event: 'completed', id: this.context.correlationId });
    }

    @OnWorkerEvent('failed')
    failed(job: Job<{ key: string }> | undefined): void {
      if (job !== undefined) ran.push({ key: `failed:${job.data.key}`, event: 'failed', id: this.context.correlationId });
    }
  }
  return RecordingProcessor;
}

async function boot(
  queue: string,
  options: ContextModuleOptions<MyContext> = {},
  bull: ContextBullOptions = {},
  logger: LoggerService | false = false,
): Promise<INestApplicationContext> {
  @Module({
    imports: [
      ContextModule.forRoot(MyContext, options),
      BullModule.forRoot({ connection: REDIS }),
      BullModule.registerQueue({ name: queue }),
      ContextBullModule.forRoot(bull),
    ],
    providers: [processorFor(queue)],
  })
  class JobsModule {}
  return NestFactory.createApplicationContext(JobsModule, { logger });
}

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('BullMQ: a failing validate or generate gives the job a fresh context, reported once', () => {
  const queueName = uniqueName('callbacks');
  let queue: Queue;
  let app: INestApplicationContext | undefined;
  const logger = new CaptureLogger();

  beforeAll(async () => {
    await requireBroker('redis');
    queue = new Queue(queueName, { connection: REDIS });
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    logger.errors.length = 0;
  });
  afterAll(async () => {
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
  });

  const add = (key: string, metadata: Record<string, string>) =>
    queue.add('x', { key }, { [JOB_CONTEXT_OPTION]: metadata } as never);

  it('validate throws on the job id: the job runs and completes with a default id, the failure is logged once', async () => {
    app = await boot(queueName, { correlationId: { validate: (id: string) => /^[\w-]+$/.test(decodeURIComponent(id)) } }, {}, logger);
    await add('v-1', { 'x-request-id': '%', traceparent: TRACEPARENT });
    const [run] = await ran.wait('process:v-1');
    const [done] = await ran.wait('completed:v-1');
    expect(run!.id).toMatch(UUID);
    expect(run!.traceId).not.toBe('0af7651916cd43dd8448eb211c80319c'); // a fresh context: no inbound data
    expect(done!.id).toBe(run!.id); // the worker event shares the job's context
    expect(logger.errors).toHaveLength(1);
    expect(logger.errors[0]).toMatch(/correlationId\.validate callback threw URIError/);
    await add('v-2', { 'x-request-id': 'next-2' });
    expect((await ran.wait('process:v-2'))[0]!.id).toBe('next-2');
    expect(logger.errors).toHaveLength(1);
  });

  it('generate throws: a job without an id runs and completes with a default id, logged once per job; a job with an id keeps it', async () => {
    app = await boot(queueName, { correlationId: { generate: () => { throw new Error('id service down'); } } }, {}, logger);
    await add('g-1', { traceparent: TRACEPARENT });
    const [run] = await ran.wait('process:g-1');
    expect(run!.id).toMatch(UUID);
    expect((await ran.wait('completed:g-1'))[0]!.id).toBe(run!.id);
    expect(logger.errors).toHaveLength(1);
    expect(logger.errors[0]).toMatch(/correlationId\.generate callback threw Error: id service down/);
    await add('g-2', { 'x-request-id': 'given-2' });
    expect((await ran.wait('process:g-2'))[0]!.id).toBe('given-2');
    expect(logger.errors).toHaveLength(1);
  });
});

describe('BullMQ: every candidate of a correlation id header counts', () => {
  const queueName = uniqueName('candidates');
  let queue: Queue;
  let app: INestApplicationContext;

  beforeAll(async () => {
    await requireBroker('redis');
    queue = new Queue(queueName, { connection: REDIS });
    app = await boot(queueName);
  });
  afterAll(async () => {
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
    await app?.close();
  });

  it.each([
    ['an invalid X-Request-Id after a valid x-request-id', { 'x-request-id': 'good-1', 'X-Request-Id': 'bad value' }, 'good-1'],
    ['an invalid X-Request-Id before a valid x-request-id', { 'X-Request-Id': 'bad value', 'x-request-id': 'good-2' }, 'good-2'],
    ['an invalid x-request-id and a valid X-Request-Id', { 'X-Request-Id': 'good-3', 'x-request-id': 'bad value' }, 'good-3'],
    ['both valid: the exact lower-case key wins', { 'X-Request-Id': 'upper-4', 'x-request-id': 'lower-4' }, 'lower-4'],
    ['only invalid ones: a fresh id', { 'X-Request-Id': 'bad value', 'x-request-id': 'also bad' }, UUID],
  ])('%s', async (_name, metadata, expected) => {
    const key = uniqueName('candidate');
    await queue.add('x', { key }, { [JOB_CONTEXT_OPTION]: metadata } as never);
    const [run] = await ran.wait(`process:${key}`);
    if (typeof expected === 'string') expect(run!.id).toBe(expected);
    else expect(run!.id).toMatch(expected);
  });

  it('readJobContext() keeps every candidate of an id header in priority order, and the first value of any other header', () => {
    const job = {
      opts: {
        [JOB_CONTEXT_OPTION]: { 'X-Request-Id': 'b', 'x-request-id': 'a', 'X-REQUEST-ID': 'c', 'x-correlation-id': 'd', TraceParent: 't1', traceparent: 't0' },
      },
    };
    expect({ ...readJobContext(job) }).toEqual({ 'x-request-id': ['a', 'b', 'c'], 'x-correlation-id': 'd', traceparent: 't0' });
    expect({ ...readJobContext(job, ['x-correlation-id']) }).toEqual({ 'x-request-id': 'a', 'x-correlation-id': 'd', traceparent: 't0' });
  });
});

describe('BullMQ: trustJobMetadata: false is never treated as trusted', () => {
  const meta = (n: number) => ({ 'x-request-id': `meta-${n}`, traceparent: TRACEPARENT });

  it('a request-scoped processor class shared with an app that trusts job metadata: the untrusting app\'s jobs always get a fresh id', async () => {
    await requireBroker('redis');
    const queueName = uniqueName('scoped-trust');
    const seen = new Log<{ key: string; app: string; injected: string; service: string | undefined }>();

    /** Injecting MyContext makes it request-scoped: Nest builds one per job. */
    @Processor(queueName, { stalledInterval: 500 })
    class ScopedShared extends WorkerHost {
      constructor(
        private readonly ctx: MyContext,
        private readonly context: ContextService<MyContext>,
        @Inject(APP) private readonly app: string,
      ) {
        super();
      }
      async process(job: Job<{ key: string }>): Promise<void> {
        await sleep(5);
        seen.push({ key: job.data.key, app: this.app, injected: this.ctx.correlationId, service: this.context.correlationId });
      }
    }

    const build = async (app: string, trustJobMetadata: boolean) => {
      @Module({
        imports: [
          ContextModule.forRoot(MyContext),
          BullModule.forRoot({ connection: REDIS }),
          BullModule.registerQueue({ name: queueName }),
          ContextBullModule.forRoot({ trustJobMetadata }),
        ],
        providers: [ScopedShared, { provide: APP, useValue: app }],
      })
      class SharedModule {}
      return NestFactory.createApplicationContext(SharedModule, { logger: false });
    };
    // The untrusting app first: the class's later binding is the trusting app's.
    const untrusting = await build('untrusting', false);
    const trusting = await build('trusting', true);
    const queue = new Queue(queueName, { connection: REDIS });
    try {
      const byApp = { untrusting: 0, trusting: 0 };
      let n = 0;
      // Both workers consume the queue: add jobs until each app has run a few.
      for (let batch = 0; batch < 20 && (byApp.untrusting < 3 || byApp.trusting < 3); batch++) {
        const keys = Array.from({ length: 10 }, () => ++n);
        await Promise.all(keys.map((i) => queue.add('x', { key: `job-${i}` }, { [JOB_CONTEXT_OPTION]: meta(i) } as never)));
        for (const i of keys) {
          const [s] = await seen.wait(`job-${i}`);
          byApp[s!.app as keyof typeof byApp]++;
          if (s!.app === 'untrusting') {
            expect({ job: i, injected: s!.injected, service: s!.service }).toEqual({
              job: i,
              injected: expect.stringMatching(UUID),
              service: s!.injected,
            });
          } else {
            expect({ job: i, injected: s!.injected, service: s!.service }).toEqual({ job: i, injected: `meta-${i}`, service: `meta-${i}` });
          }
        }
      }
      expect(byApp.untrusting).toBeGreaterThanOrEqual(3);
      expect(byApp.trusting).toBeGreaterThanOrEqual(3);
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await trusting.close();
      await untrusting.close();
    }
  }, 60_000);

  it("a processor object given to both apps (useValue): the untrusting app's calls never run in the trusting app's context", async () => {
    await requireBroker('redis');
    const queueName = uniqueName('value-trust');

    @Processor(queueName, { stalledInterval: 500 })
    class ValueProcessor extends WorkerHost {
      async process(job: Job<{ key: string }>): Promise<string | undefined> {
        try {
          return currentContext.correlationId;
        } catch {
          return `none:${job.data.key}`;
        }
      }
    }
    const instance = new ValueProcessor();
    const build = async (trustJobMetadata: boolean) => {
      @Module({
        imports: [
          ContextModule.forRoot(MyContext),
          BullModule.forRoot({ connection: REDIS }),
          BullModule.registerQueue({ name: queueName }),
          ContextBullModule.forRoot({ trustJobMetadata }),
        ],
        providers: [{ provide: ValueProcessor, useValue: instance }],
      })
      class ValueModule {}
      return NestFactory.createApplicationContext(ValueModule, { logger: false });
    };
    const untrusting = await build(false);
    const trusting = await build(true);
    const job = (n: number) => ({ id: `v-${n}`, data: { key: `v-${n}` }, opts: { [JOB_CONTEXT_OPTION]: meta(n) } }) as unknown as Job<{ key: string }>;
    const inApp = (app: INestApplicationContext, n: number) => app.get<ContextService<MyContext>>(ContextService).run(() => instance.process(job(n)));
    let trustingOpen = true;
    try {
      expect(await inApp(untrusting, 1)).toMatch(UUID);
      expect(await inApp(trusting, 2)).toBe('meta-2');
      // Outside any context nothing tells which app the call belongs to: no context rather than a guessed one.
      expect(await instance.process(job(3))).toBe('none:v-3');
      trustingOpen = false;
      await trusting.close();
      expect(await inApp(untrusting, 4)).toMatch(UUID);
      expect(await instance.process(job(5))).toMatch(UUID); // the only app left: its own, untrusting, binding
    } finally {
      if (trustingOpen) await trusting.close();
      await untrusting.close();
    }
  });

  it('contextProcessor(fn, { trustJobMetadata: false }) gives every job a fresh id', async () => {
    await requireBroker('redis');
    const queueName = uniqueName('plain-untrusted');
    const app = await boot(uniqueName('unused'));
    const service = app.get<ContextService<MyContext>>(ContextService);
    const seen = new Log<{ key: string; id: string | undefined }>();
    const queue = new Queue(queueName, { connection: REDIS });
    const worker = new Worker(
      queueName,
      contextProcessor(async (job: Job<{ key: string }>) => seen.push({ key: job.data.key, id: service.correlationId }), { trustJobMetadata: false }),
      { connection: REDIS, stalledInterval: 500 },
    );
    try {
      await queue.add('x', { key: 'p-1' }, { [JOB_CONTEXT_OPTION]: meta(1) } as never);
      expect((await seen.wait('p-1'))[0]!.id).toMatch(UUID);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await app.close();
    }
  });
});

describe("BullMQ: job metadata goes through the app's trust policy, like every entry", () => {
  const TRACE_ID = TRACEPARENT.slice(3, 35);
  let queue: Queue | undefined;
  let app: INestApplicationContext | undefined;

  afterEach(async () => {
    await app?.close();
    app = undefined;
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
    queue = undefined;
  });

  /** Boots an app with `options` and `bull`, adds one job carrying an id and a traceparent, returns what its processor saw. */
  async function runOne(label: string, options: ContextModuleOptions<MyContext>, bull: ContextBullOptions = {}): Promise<Ran> {
    await requireBroker('redis');
    const queueName = uniqueName(`trust-${label}`);
    app = await boot(queueName, options, bull);
    await app.init();
    queue = new Queue(queueName, { connection: REDIS });
    const key = `${label}-1`;
    await queue.add('x', { key }, { [JOB_CONTEXT_OPTION]: { 'x-request-id': `job-${label}`, traceparent: TRACEPARENT } } as never);
    return (await ran.wait(`process:${key}`))[0]!;
  }

  it('trustInbound: true (the default) restores the producer id and trace', async () => {
    const seen = await runOne('default', {});
    expect(seen).toMatchObject({ id: 'job-default', traceId: TRACE_ID });
  });

  it('trustInbound: false gives the job a fresh id and a new trace', async () => {
    const seen = await runOne('edge', { trustInbound: false });
    expect(seen.id).toMatch(UUID);
    expect(seen.traceId).not.toBe(TRACE_ID);
  });

  it('a request predicate cannot vouch for a job (there is no request): fresh id and trace, and the predicate is never called', async () => {
    const predicate = jest.fn((_request: unknown) => true);
    const seen = await runOne('predicate', { trustInbound: predicate });
    expect(seen.id).toMatch(UUID);
    expect(seen.traceId).not.toBe(TRACE_ID);
    expect(predicate).not.toHaveBeenCalled();
  });

  it('per kind: trustInbound: false with trace.trustInbound: true keeps the trace and not the id', async () => {
    const seen = await runOne('per-kind', { trustInbound: false, trace: { trustInbound: true } });
    expect(seen.id).toMatch(UUID);
    expect(seen.traceId).toBe(TRACE_ID);
  });

  it('trustJobMetadata: true vouches for the job store whatever the policy says', async () => {
    const seen = await runOne('vouched', { trustInbound: () => false }, { trustJobMetadata: true });
    expect(seen).toMatchObject({ id: 'job-vouched', traceId: TRACE_ID });
  });
});
