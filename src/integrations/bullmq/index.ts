import {
  Inject,
  Injectable,
  Module,
  Optional,
  type DynamicModule,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService } from '@nestjs/core';
import { Queue, type Job, type JobsOptions } from 'bullmq';
import { ContextHost } from '../../context.host.js';
import { ContextRecord, storage, type Carrier } from '../../context.storage.js';
import { AppBindings, classOf } from '../../method.explorer.js';
import { readCorrelationId } from '../../propagation/correlation-id.js';
import { hostOrThrow, resolveHost } from '../../context.apps.js';
import { runIn, wrapMethod } from '../../with-context.decorator.js';

/**
 * The job option under which the producer's context travels with a job (in `job.opts`, never in
 * `job.data`): `{ traceparent, tracestate?, baggage?, 'x-request-id' }`. Job options are stored
 * with the job in Redis, so the metadata survives delays, retries and worker restarts.
 */
export const JOB_CONTEXT_OPTION = 'nestjsContext';

/** The `ContextInit.source` of contexts opened for jobs. */
export const JOB_CONTEXT_SOURCE = 'bullmq';

/** Options of {@link ContextBullModule.forRoot}. */
export interface ContextBullOptions {
  /**
   * Restore the producer's context (correlation id, trace, baggage) from a job's metadata.
   * `false` gives every job a fresh context. Jobs come from your own Redis, so the app's HTTP
   * `trustInbound` policy does not apply to them. Default: `true`.
   */
  trustJobMetadata?: boolean;
  /** Add the active context to every job added through the queues the app registers. Default: `true`. */
  propagate?: boolean;
}

/** Injection token of the {@link ContextBullOptions}. */
export const CONTEXT_BULL_OPTIONS = Symbol.for('nestjs-context:bullmq-options');

const PROCESSOR_METADATA = 'bullmq:processor_metadata';
const ON_WORKER_EVENT_METADATA = 'bullmq:worker_events_metadata';
const TAG = Symbol.for('nestjs-context:bullmq');
const JOB_RECORD = Symbol.for('nestjs-context:bullmq-record');
const MAX_VALUE_LENGTH = 8192;
const MAX_KEYS = 16;

type AnyFn = (this: unknown, ...args: unknown[]) => unknown;
type JobLike = { id?: unknown; data?: unknown; opts?: unknown; [JOB_RECORD]?: ContextRecord };

interface Binding {
  host: ContextHost;
  trust: boolean;
}

/**
 * Processor classes and this app's instances of them → the app (host and options) they belong to;
 * the latest live app is current, and closing it restores the earlier one.
 */
const bindings = new AppBindings<Binding>();

function isJob(value: unknown): value is JobLike {
  if (typeof value !== 'object' || value === null) return false;
  try {
    return 'data' in value && 'opts' in value && 'id' in value;
  } catch {
    // A Proxy whose `has` trap throws is no job this integration can read.
    return false;
  }
}

/**
 * Reads a job's context metadata; `undefined` when it has none or when it is malformed in any way
 * (not a plain object of at most 16 string values of sane length, or not readable at all: a getter
 * that throws, a revoked Proxy). Never throws.
 */
export function readJobContext(job: { opts?: unknown } | undefined | null): Readonly<Record<string, string>> | undefined {
  try {
    return readMetadata(job);
  } catch {
    return undefined;
  }
}

function readMetadata(job: { opts?: unknown } | undefined | null): Readonly<Record<string, string>> | undefined {
  const opts = job?.opts;
  if (typeof opts !== 'object' || opts === null) return undefined;
  const meta = (opts as Record<string, unknown>)[JOB_CONTEXT_OPTION];
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return undefined;
  const proto = Object.getPrototypeOf(meta) as unknown;
  if (proto !== Object.prototype && proto !== null) return undefined;
  const keys = Object.keys(meta);
  if (keys.length === 0 || keys.length > MAX_KEYS) return undefined;
  const carrier: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const key of keys) {
    const value = (meta as Record<string, unknown>)[key];
    if (typeof value !== 'string' || value.length > MAX_VALUE_LENGTH) return undefined;
    carrier[key.toLowerCase()] = value;
  }
  return carrier;
}

/** Builds the record of one job run from its metadata (trusted: it comes from the app's own Redis). */
function recordFromCarrier(host: ContextHost, carrier: Carrier): ContextRecord {
  const o = host.options;
  const names = o.outboundHeader === undefined ? o.requestHeaders : [o.outboundHeader, ...o.requestHeaders];
  const id = readCorrelationId(carrier, names, o.validate) ?? o.generate();
  return new ContextRecord(o, id, JOB_CONTEXT_SOURCE, undefined, carrier, carrier);
}

/**
 * The record of one job object: restored from its metadata, or fresh. Anchored on the job object
 * so that the processor and the worker events of the same run share it; a retry fetches a new job
 * object and so gets a new record with the same correlation and trace id and its own span id.
 */
function recordForJob(host: ContextHost, job: JobLike, trust: boolean): ContextRecord {
  const anchored = anchoredRecord(job);
  if (anchored !== undefined && anchored.config === host.options) return anchored;
  const carrier = trust ? readJobContext(job) : undefined;
  const record = carrier === undefined ? host.create({ source: JOB_CONTEXT_SOURCE }) : recordFromCarrier(host, carrier);
  try {
    Object.defineProperty(job, JOB_RECORD, { value: record, configurable: true, writable: true, enumerable: false });
  } catch {
    // A frozen (or exotic) job object cannot hold the record: its worker events get their own.
  }
  return record;
}

function anchoredRecord(job: JobLike): ContextRecord | undefined {
  try {
    const anchored = job[JOB_RECORD];
    return anchored instanceof ContextRecord ? anchored : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Returns job options carrying the active context (a copy of `opts`; `opts` itself is returned when
 * no context is active, when it already carries metadata, or for repeatable jobs, whose runs each
 * get a fresh context). For producers that do not go through a propagating queue.
 *
 * @example await queue.add('send', data, withJobContext({ attempts: 3 }));
 */
export function withJobContext<O extends JobsOptions | undefined>(opts?: O): O | JobsOptions {
  const record = storage.getStore();
  if (record === undefined) return opts as O;
  if (opts !== undefined && opts !== null) {
    if ((opts as Record<string, unknown>)[JOB_CONTEXT_OPTION] !== undefined) return opts;
    if ((opts as { repeat?: unknown }).repeat !== undefined) return opts;
  }
  return { ...(opts ?? {}), [JOB_CONTEXT_OPTION]: record.outboundHeaders() } as JobsOptions;
}

/** The part of a bullmq `Queue` this integration patches. */
export interface QueueLike {
  add(name: never, data: never, opts?: JobsOptions): Promise<unknown>;
  addBulk(jobs: never): Promise<unknown>;
}

/**
 * Makes every job added to `queue` (`add`, `addBulk`) carry the active context — zero per-call
 * code. `ContextBullModule` does this for the queues the app registers (`BullModule.registerQueue`);
 * call it for queues you create yourself. Idempotent.
 *
 * @example const queue = propagateQueueContext(new Queue('mail', { connection }));
 */
export function propagateQueueContext<Q extends QueueLike>(queue: Q): Q {
  const target = queue as unknown as Record<string | symbol, unknown>;
  if (target[TAG] === true) return queue;
  const add = queue.add as unknown as AnyFn;
  const addBulk = queue.addBulk as unknown as AnyFn;
  Object.defineProperty(target, TAG, { value: true });
  target.add = function (this: unknown, name: unknown, data: unknown, opts?: JobsOptions) {
    return add.call(this, name, data, withJobContext(opts));
  };
  target.addBulk = function (this: unknown, jobs: unknown) {
    if (storage.getStore() === undefined || !Array.isArray(jobs)) return addBulk.call(this, jobs);
    const withContext = jobs.map((job: { opts?: JobsOptions }) =>
      job !== null && typeof job === 'object' ? { ...job, opts: withJobContext(job.opts) } : job,
    );
    return addBulk.call(this, withContext);
  };
  return queue;
}

/**
 * Wraps a bullmq processor function (for a plain `new Worker(name, processor)`) so that every job
 * runs inside its producer's context, or a fresh one. Uses the context class and options of the
 * app the worker belongs to: the app of the context active where the job runs, else the only app
 * running (with several, use `@Processor()` classes of the app instead, which are bound to it).
 *
 * @example new Worker('mail', contextProcessor(async (job) => send(job.data)), { connection });
 * @throws ContextError when a job arrives and no app can be determined; the message says what to do.
 */
export function contextProcessor<J extends Job, R, A extends unknown[]>(
  processor: (job: J, ...rest: A) => R,
  options: Pick<ContextBullOptions, 'trustJobMetadata'> = {},
): (job: J, ...rest: A) => R {
  const trust = options.trustJobMetadata ?? true;
  return function (this: unknown, job: J, ...rest: A): R {
    const host = resolveHost('contextProcessor()', this);
    return runIn(recordForJob(host, job as unknown as JobLike, trust), () => processor.call(this, job, ...rest));
  };
}

/** The binding of a processor object: only objects of an app that imported this integration, while it runs. */
function bindingOf(instance: unknown): Binding | undefined {
  if (typeof instance !== 'object' || instance === null) return undefined;
  const found = bindings.of(instance);
  return found === undefined || found.host.closed ? undefined : found;
}

/** `process(job, …)` of a processor class, run inside the job's context. */
function wrapProcess(original: AnyFn): AnyFn {
  return function (this: unknown, job: unknown, ...rest: unknown[]) {
    const binding = bindingOf(this);
    if (binding === undefined || !isJob(job)) return original.call(this, job, ...rest);
    return runIn(recordForJob(binding.host, job, binding.trust), () => original.call(this, job, ...rest));
  };
}

/** An `@OnWorkerEvent()` handler: inside the job's context when its first argument is a job, else a fresh one. */
function wrapWorkerEvent(original: AnyFn): AnyFn {
  return function (this: unknown, ...args: unknown[]) {
    const binding = bindingOf(this);
    if (binding === undefined) return original.apply(this, args);
    const first = args[0];
    const record = isJob(first) ? recordForJob(binding.host, first, binding.trust) : binding.host.create({ source: JOB_CONTEXT_SOURCE });
    return runIn(record, () => original.apply(this, args));
  };
}

interface WorkerLike {
  processFn?: unknown;
}

/**
 * Finds the app's `@Processor()` classes and registered queues and connects them to the context.
 * Processor methods are wrapped while the app is being built (before `@nestjs/bullmq` binds them),
 * queues as soon as they exist. @internal
 */
@Injectable()
class ContextBullExplorer implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy {
  private readonly binding: Binding;
  private readonly classes = new Set<object>();
  private readonly instances = new Set<object>();

  constructor(
    private readonly discovery: DiscoveryService,
    @Optional() @Inject(ContextHost) host: ContextHost | undefined,
    @Optional() @Inject(CONTEXT_BULL_OPTIONS) private readonly options: ContextBullOptions = {},
  ) {
    this.binding = { host: hostOrThrow(host, 'ContextBullModule'), trust: options?.trustJobMetadata ?? true };
    // Providers are not instantiated yet, but their classes are known: wrapping the prototypes now
    // happens before any lifecycle hook, so before @nestjs/bullmq binds `process` to its workers.
    for (const wrapper of this.discovery.getProviders()) {
      const metatype = wrapper.metatype as unknown;
      if (typeof metatype === 'function' && !wrapper.inject) this.patchClass(metatype);
      else if (metatype === null || metatype === undefined) this.patchClass(classOf(wrapper.instance)); // useValue
    }
  }

  private patchClass(type: unknown): void {
    if (typeof type !== 'function' || this.classes.has(type)) return;
    const reflect = Reflect as unknown as { getMetadata?(key: string, target: object): unknown };
    if (reflect.getMetadata?.(PROCESSOR_METADATA, type) === undefined) return;
    const proto = (type as { prototype: Record<string, unknown> }).prototype;
    this.classes.add(type);
    bindings.bind(type, this.binding);
    wrapMethod(proto, 'process', TAG, wrapProcess);
    for (let p: object | null = proto; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
      for (const key of Object.getOwnPropertyNames(p)) {
        const descriptor = Object.getOwnPropertyDescriptor(p, key);
        const fn = descriptor?.value as unknown;
        if (key === 'constructor' || typeof fn !== 'function') continue;
        if (reflect.getMetadata?.(ON_WORKER_EVENT_METADATA, fn) !== undefined) wrapMethod(proto, key, TAG, wrapWorkerEvent);
      }
    }
  }

  /**
   * Wraps processors given as `useValue`/`useFactory` providers and the registered queues, and binds
   * this app's processor instances to this app (they keep it while another app shares the class).
   */
  onModuleInit(): void {
    for (const wrapper of this.discovery.getProviders()) {
      if (!wrapper.isDependencyTreeStatic()) continue;
      const instance = wrapper.instance as unknown;
      if (instance === null || typeof instance !== 'object') continue;
      if (this.options?.propagate !== false && instance instanceof Queue) {
        propagateQueueContext(instance);
        continue;
      }
      const type = classOf(instance);
      this.patchClass(type);
      if (type === undefined || !this.classes.has(type) || this.instances.has(instance)) continue;
      this.instances.add(instance);
      bindings.bind(instance, this.binding);
    }
    this.wrapWorkers();
  }

  /** Request-scoped processors are built before `process` runs: enter the job's context one step earlier. */
  onApplicationBootstrap(): void {
    this.wrapWorkers();
  }

  private wrapWorkers(): void {
    for (const wrapper of this.discovery.getProviders()) {
      const instance = wrapper.instance as { _worker?: WorkerLike } | null | undefined;
      if (instance === null || typeof instance !== 'object' || !this.classes.has(instance.constructor)) continue;
      if (wrapper.isDependencyTreeStatic()) continue;
      const worker = instance._worker;
      const fn = worker?.processFn;
      if (worker === undefined || typeof fn !== 'function' || (fn as unknown as Record<symbol, unknown>)[TAG] === true) continue;
      const binding = this.binding;
      const original = fn as AnyFn;
      const wrapped = function (this: unknown, job: unknown, ...rest: unknown[]) {
        if (!isJob(job)) return original.call(this, job, ...rest);
        return runIn(recordForJob(binding.host, job, binding.trust), () => original.call(this, job, ...rest));
      };
      Object.defineProperty(wrapped, TAG, { value: true });
      worker.processFn = wrapped;
    }
  }

  /** Unbinds this app's processor classes and instances: an earlier app still alive becomes current again. */
  onModuleDestroy(): void {
    for (const key of [...this.classes, ...this.instances]) bindings.unbind(key, this.binding);
    this.classes.clear();
    this.instances.clear();
  }
}

/**
 * Carries the context through BullMQ: a job added inside a context (through a queue registered
 * with `BullModule.registerQueue`) carries its correlation id, `traceparent` (fresh parent id),
 * `tracestate` and declared baggage in `job.opts.nestjsContext`; `process()` and `@OnWorkerEvent()`
 * handlers of `@Processor()` classes run inside that context (same ids, their own span id), on
 * every attempt. Jobs without metadata get a fresh context. Import it once, beside `ContextModule`.
 *
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext), BullModule.forRoot({ connection }), ContextBullModule.forRoot()] })
 */
@Module({})
export class ContextBullModule {
  /** Registers the integration (global). */
  static forRoot(options: ContextBullOptions = {}): DynamicModule {
    return {
      module: ContextBullModule,
      global: true,
      imports: [DiscoveryModule],
      providers: [{ provide: CONTEXT_BULL_OPTIONS, useValue: options }, ContextBullExplorer],
    };
  }
}
