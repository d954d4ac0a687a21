import 'reflect-metadata';
import { Controller, Injectable, Module, Param, Post, type INestApplication } from '@nestjs/common';
import { BullModule, InjectQueue, Processor, WorkerHost } from '@nestjs/bullmq';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Queue, Worker, type Job } from 'bullmq';
import { propagation, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { createLogFields } from '../../src/integrations/logger/index.js';
import { ContextBullModule, contextProcessor, JOB_CONTEXT_OPTION, readJobContext } from '../../src/integrations/bullmq/index.js';
import { ContextOpenTelemetryModule } from '../../src/integrations/opentelemetry/index.js';
import { brokers, requireBroker, uniqueName } from '../utils/brokers.js';
import { bootApp } from '../utils/platforms.js';
import { Log } from '../entrypoints/log.js';
import { OUTSIDE, startOtel, type OtelSdk } from './otel-sdk.js';

/** Where the BullMQ suites expect Redis. */
const REDIS = { host: brokers.redis.host, port: brokers.redis.port };

class JobContext {
  correlationId: string;
  tenant?: string;
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

const fields = createLogFields();
const QUEUE = uniqueName('otel-jobs');

/** What a processor saw: the job's metadata, its record's trace and what its log lines carry. */
interface Seen {
  key: string;
  metadata: Record<string, unknown> | undefined;
  correlationId: string;
  tenant: string | undefined;
  traceId: string;
  spanId: string;
  parentId: string | undefined;
  remote: boolean;
  line: Record<string, unknown>;
  /** A line written inside a span the processor starts itself. */
  innerLine: Record<string, unknown>;
  innerSpanId: string;
}

const seen = new Log<Seen>();

function look(key: string, job: Job, context: ContextService<JobContext>): Seen {
  const { traceId, spanId, parentId, remote } = context.trace!;
  const line = { ...fields.current() };
  const inner = trace.getTracer('test').startActiveSpan('processor work', (span) => {
    span.end();
    return { line: { ...fields.current() }, spanId: span.spanContext().spanId };
  });
  const metadata = readJobContext(job);
  return {
    key,
    metadata: metadata === undefined ? undefined : { ...metadata },
    correlationId: context.correlationId ?? '',
    tenant: context.get().tenant,
    traceId,
    spanId,
    parentId,
    remote,
    line,
    innerLine: inner.line,
    innerSpanId: inner.spanId,
  };
}

@Processor(QUEUE)
class OtelProcessor extends WorkerHost {
  constructor(private readonly context: ContextService<JobContext>) {
    super();
  }
  async process(job: Job<{ key: string }>): Promise<void> {
    seen.push(look(job.data.key, job, this.context));
  }
}

@Injectable()
class Producer {
  constructor(@InjectQueue(QUEUE) readonly queue: Queue) {}
}

@Controller('jobs')
class JobsController {
  constructor(
    private readonly producer: Producer,
    private readonly context: ContextService<JobContext>,
  ) {}
  @Post(':key')
  async add(@Param('key') key: string): Promise<{ traceId: string; spanId: string; correlationId: string }> {
    this.context.get().tenant = 'acme';
    await this.producer.queue.add('http', { key });
    return { traceId: this.context.trace!.traceId, spanId: this.context.trace!.spanId, correlationId: this.context.correlationId ?? '' };
  }
}

/** The worker method that runs the processor for one job (protected in bullmq's typings), which BullMQ instrumentations wrap. */
type ProcessJob = { callProcessJob(job: Job, token: string, signal?: AbortSignal): Promise<unknown> };

/** A BullMQ instrumentation as OTel-style instrumentations do it: a consumer span per job, child of the context the job carries. */
function instrumentWorker(worker: ProcessJob): void {
  const callProcessJob = worker.callProcessJob.bind(worker);
  worker.callProcessJob = (job, token, signal) => {
    const carrier = (job.opts as Record<string, unknown>)[JOB_CONTEXT_OPTION] as Record<string, string> | undefined;
    const parent = carrier === undefined ? ROOT_CONTEXT : propagation.extract(ROOT_CONTEXT, carrier);
    return trace.getTracer('bullmq-like').startActiveSpan(`${QUEUE} process`, { kind: SpanKind.CONSUMER }, parent, async (span) => {
      try {
        return await callProcessJob(job, token, signal);
      } finally {
        span.end();
      }
    });
  };
}

describe('OpenTelemetry SDK + nestjs-context through BullMQ (real Redis)', () => {
  let otel: OtelSdk;
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    await requireBroker('redis');
    otel = startOtel();
    @Module({
      imports: [
        ContextModule.forRoot(JobContext, { baggage: { fields: ['tenant'] } }),
        ContextOpenTelemetryModule.forRoot(),
        BullModule.forRoot({ connection: REDIS }),
        BullModule.registerQueue({ name: QUEUE }),
        ContextBullModule.forRoot(),
      ],
      controllers: [JobsController],
      providers: [OtelProcessor, Producer],
    })
    class AppModule {}
    app = await bootApp(AppModule, () => new ExpressAdapter());
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app?.get(Producer).queue.obliterate({ force: true }).catch(() => undefined);
    await app?.close();
    await otel?.shutdown();
  });
  beforeEach(() => otel.exporter.reset());

  /** Adds a job from an HTTP request OTel traces (its server span is active where the job is added). */
  async function addFromRequest(key: string): Promise<{ request: { traceId: string; spanId: string; correlationId: string }; job: Seen }> {
    const res = await fetch(`${url}/jobs/${key}`, { method: 'POST', headers: { [OUTSIDE]: '1' } });
    expect(res.status).toBe(201);
    const request = (await res.json()) as { traceId: string; spanId: string; correlationId: string };
    const [job] = await seen.wait(key);
    return { request, job: job! };
  }

  it("a job added inside a request OTel traces carries OTel's context; the processor (no span of its own) continues OTel's trace", async () => {
    const { request, job } = await addFromRequest('no-consumer-span');
    const spans = await otel.until((s) => s.some((span) => span.kind === SpanKind.SERVER && span.spanContext().traceId === request.traceId));
    const server = spans.find((span) => span.kind === SpanKind.SERVER && span.spanContext().traceId === request.traceId)!;
    // the request's record adopted OTel's server span
    expect(request.spanId).toBe(server.spanContext().spanId);
    // the job's options carry OTel's context, injected through the SDK's propagator: its traceparent names the server span
    expect(job.metadata).toEqual({ traceparent: `00-${request.traceId}-${server.spanContext().spanId}-01`, baggage: 'tenant=acme', 'x-request-id': request.correlationId });
    // the processor continues that trace with a span id of its own (OTel has no span there)
    expect(job.traceId).toBe(request.traceId);
    expect(job.parentId).toBe(server.spanContext().spanId);
    expect(job.remote).toBe(true);
    expect(spans.map((s) => s.spanContext().spanId)).not.toContain(job.spanId);
    expect(job.correlationId).toBe(request.correlationId);
    expect(job.tenant).toBe('acme');
    expect(job.line).toEqual({ correlationId: request.correlationId, traceId: request.traceId, spanId: job.spanId });
    // a line inside a span the processor starts shows that span as OTel exports it (OTel's context
    // has no span at this entry, so OTel makes that span the root of a trace of its own)
    const inner = (await otel.until((s) => s.some((span) => span.spanContext().spanId === job.innerSpanId))).find((s) => s.spanContext().spanId === job.innerSpanId)!;
    expect(job.innerLine).toEqual({ correlationId: request.correlationId, traceId: inner.spanContext().traceId, spanId: job.innerSpanId });
  });

  it("a processor run inside a consumer span (a BullMQ instrumentation's) adopts that span: one trace from the request to the job", async () => {
    const worker = app.get(OtelProcessor).worker as unknown as ProcessJob;
    const original = worker.callProcessJob;
    instrumentWorker(worker);
    try {
      const { request, job } = await addFromRequest('consumer-span');
      const spans = await otel.until((s) => s.some((span) => span.kind === SpanKind.CONSUMER && span.spanContext().traceId === request.traceId));
      const server = spans.find((span) => span.kind === SpanKind.SERVER && span.spanContext().traceId === request.traceId)!;
      const consumer = spans.find((span) => span.kind === SpanKind.CONSUMER && span.spanContext().traceId === request.traceId)!;
      expect(consumer.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
      // the record is the consumer span: its ids, its (remote) parent; nothing minted
      expect(job.traceId).toBe(request.traceId);
      expect(job.spanId).toBe(consumer.spanContext().spanId);
      expect(job.parentId).toBe(server.spanContext().spanId);
      expect(job.remote).toBe(true);
      // the correlation id and the baggage still come from the job's metadata
      expect(job.correlationId).toBe(request.correlationId);
      expect(job.tenant).toBe('acme');
      expect(job.line).toEqual({ correlationId: request.correlationId, traceId: request.traceId, spanId: consumer.spanContext().spanId });
      expect(job.innerLine.spanId).toBe(job.innerSpanId);
    } finally {
      worker.callProcessJob = original;
    }
  });

  it("a plain Worker's contextProcessor() run inside a span of the user's adopts it; outside any span the job's own trace", async () => {
    const queueName = uniqueName('otel-plain');
    const plain = new Log<Seen>();
    const context = app.get<ContextService<JobContext>>(ContextService);
    const processor = contextProcessor(async (job: Job<{ key: string; span: boolean }>) => plain.push(look(job.data.key, job, context)));
    const tracer = trace.getTracer('user');
    const userSpans = new Map<string, { traceId: string; spanId: string }>();
    const worker: Worker = new Worker(
      queueName,
      (job: Job<{ key: string; span: boolean }>): Promise<void> =>
        job.data.span
          ? tracer.startActiveSpan('my job', async (span) => {
              userSpans.set(job.data.key, { traceId: span.spanContext().traceId, spanId: span.spanContext().spanId });
              try {
                return await processor.call(worker, job);
              } finally {
                span.end();
              }
            })
          : processor.call(worker, job),
      { connection: REDIS },
    );
    const queue = new Queue(queueName, { connection: REDIS });
    try {
      // jobs whose metadata carries a trace of their own (a producer without OTel)
      await queue.add('a', { key: 'in-span', span: true }, { [JOB_CONTEXT_OPTION]: { 'x-request-id': 'job-1', traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` } } as never);
      await queue.add('b', { key: 'no-span', span: false }, { [JOB_CONTEXT_OPTION]: { 'x-request-id': 'job-2', traceparent: `00-${'c'.repeat(32)}-${'d'.repeat(16)}-01` } } as never);
      const [inSpan] = await plain.wait('in-span');
      const [noSpan] = await plain.wait('no-span');
      const user = userSpans.get('in-span')!;
      // the user's span wins over the job's traceparent (start it as a child of the job's context to keep one trace)
      expect([inSpan!.traceId, inSpan!.spanId, inSpan!.remote]).toEqual([user.traceId, user.spanId, false]);
      expect(inSpan!.correlationId).toBe('job-1');
      expect(inSpan!.line).toEqual({ correlationId: 'job-1', traceId: user.traceId, spanId: user.spanId });
      // no span: the job's own metadata, as without OTel
      expect([noSpan!.traceId, noSpan!.parentId, noSpan!.remote, noSpan!.correlationId]).toEqual(['c'.repeat(32), 'd'.repeat(16), true, 'job-2']);
      expect(noSpan!.line).toEqual({ correlationId: 'job-2', traceId: 'c'.repeat(32), spanId: noSpan!.spanId });
    } finally {
      await worker.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
    }
  });
});
