import 'reflect-metadata';
import { Module, type INestApplicationContext } from '@nestjs/common';
import { BullModule, Processor, WorkerHost } from '@nestjs/bullmq';
import { Test } from '@nestjs/testing';
import { Queue, type Job } from 'bullmq';
import fc from 'fast-check';
import { ContextModule, ContextService, currentContext } from '../../../src/index.js';
import { ContextBullModule, JOB_CONTEXT_OPTION } from '../../../src/integrations/bullmq/index.js';
import { brokers, requireBroker, uniqueName } from '../../utils/brokers.js';
import { EventLog, serverContextOptions, TransportContext } from '../../transports/fixtures/harness.js';
import {
  assertHostile,
  expectIdFrom,
  expectWellFormed,
  headerMapJson,
  hostileString,
  ID_NAMES,
  objectText,
  runs,
  stringsIn,
  type Received,
} from './fixtures.js';

/**
 * BullMQ: jobs whose `opts.nestjsContext` is hostile (any JSON: wrong types, nesting, 100 KB values,
 * `__proto__` keys), added with a plain bullmq Queue so they go through Redis like any producer's,
 * processed by a real `@Processor()`. Getters that throw and other in-process shapes are in the
 * in-process suite.
 */

const REDIS = { host: brokers.redis.host, port: brokers.redis.port };
const QUEUE = uniqueName('hz-jobs');
/** What the processor saw, with the job metadata as the worker got it from Redis (BullMQ does not keep key order). */
const processed = new EventLog<Received & { metadata: unknown }>();

@Processor(QUEUE, { concurrency: 4 })
class HostileJobsProcessor extends WorkerHost {
  constructor(private readonly context: ContextService<TransportContext>) {
    super();
  }

  async process(job: Job<{ key: string }>): Promise<void> {
    const trace = this.context.trace;
    processed.record(job.data.key, {
      key: job.data.key,
      payload: job.data,
      correlationId: this.context.correlationId,
      viaCurrent: (currentContext as unknown as TransportContext).correlationId,
      traceId: trace?.traceId,
      parentId: trace?.parentId,
      tenant: this.context.get().tenant,
      metadata: (job.opts as Record<string, unknown>)[JOB_CONTEXT_OPTION],
    });
  }
}

@Module({
  imports: [
    ContextModule.forRoot(TransportContext, serverContextOptions),
    BullModule.forRoot({ connection: REDIS }),
    BullModule.registerQueue({ name: QUEUE }),
    ContextBullModule.forRoot(),
  ],
  providers: [HostileJobsProcessor],
})
class HostileJobsModule {}

/** Job metadata as JSON text: mostly a header map with string values (valid or not), else anything. */
const jobMetadata: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .array(fc.tuple(fc.constantFrom(...ID_NAMES, 'X-Request-Id', 'X-CORRELATION-ID', 'traceparent', 'baggage', '__proto__', 'constructor'), hostileString), {
        maxLength: 6,
      })
      .map((entries) => objectText(entries.map(([key, value]) => [key, JSON.stringify(value)] as const))),
  },
  { weight: 2, arbitrary: headerMapJson },
);

/**
 * The candidates a worker must consider, by `readJobContext`'s contract: a plain object of 1–16
 * string values of at most 8192 characters, keys lower-cased; for a correlation id header, the
 * values of every key that differs from it only in case, the exact lower-case key's first, then
 * the others in the order the worker got them (so an invalid `X-Request-Id` cannot hide a valid
 * `x-request-id`); or nothing at all.
 */
function jobCandidates(metadata: unknown): Record<string, string[]> {
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) return {};
  const keys = Object.keys(metadata);
  if (keys.length === 0 || keys.length > 16) return {};
  const carrier = new Map<string, string[]>();
  for (const key of keys) {
    const value = (metadata as Record<string, unknown>)[key];
    if (typeof value !== 'string' || value.length > 8192) return {};
    const name = key.toLowerCase();
    const list = carrier.get(name) ?? [];
    if (key === name) list.unshift(value);
    else list.push(value);
    carrier.set(name, list);
  }
  const out: Record<string, string[]> = {};
  for (const name of ID_NAMES) {
    const values = (carrier.get(name) ?? []).filter((value) => value.length > 0);
    if (values.length > 0) out[name] = values;
  }
  return out;
}

describe('hostile job metadata (BullMQ, through Redis)', () => {
  let app: INestApplicationContext;
  let queue: Queue;
  const numRuns = runs(60);

  beforeAll(async () => {
    await requireBroker('redis');
    const moduleRef = await Test.createTestingModule({ imports: [HostileJobsModule] }).compile();
    app = await moduleRef.init();
    queue = new Queue(QUEUE, { connection: REDIS });
  }, 30_000);

  afterAll(async () => {
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
    await app?.close();
  });

  it(`never crashes, pollutes or echoes an invalid id; a valid job id is kept; every job runs (${numRuns} runs)`, async () => {
    let n = 0;
    await assertHostile(jobMetadata, async (text) => {
      const key = `job-${++n}`;
      const metadata: unknown = JSON.parse(text);
      await queue.add('hostile', { key }, { [JOB_CONTEXT_OPTION]: metadata, removeOnComplete: true } as never);
      const seen = await processed.waitFor(key, 5000);
      expectWellFormed(seen, key);
      // Redis storage turns a lone surrogate into three U+FFFD: what was sent and what arrived both count.
      expectIdFrom(seen.correlationId, jobCandidates(seen.metadata), stringsIn(seen.metadata, stringsIn(metadata)));
    }, numRuns);
  }, 60_000);
});
