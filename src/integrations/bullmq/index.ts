/**
 * `nestjs-context/bullmq`: jobs carry the context they were added in, and processors run inside it.
 * For `bullmq` queues and `@nestjs/bullmq` processors.
 *
 * @module nestjs-context/bullmq
 */
import {
  Inject,
  Injectable,
  Module,
  Optional,
  type DynamicModule,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService } from '@nestjs/core';
import { Queue, type Job, type JobsOptions } from 'bullmq';
import { DEFAULT_REQUEST_HEADERS } from '../../constants.js';
import { ContextHost } from '../../runtime/context-host.js';
import { isContextRecord, runInRecord, storage, type ContextRecord } from '../../record/context-record.js';
import { outboundHeaders } from '../../propagation/inject.js';
import { AppBindings, MethodExplorer, type AnyMethod, type AppBinding, type WrapperMaker } from '../../runtime/method-explorer.js';
import { hostOrThrow, resolveHost } from '../../runtime/apps.js';
import { jobIdOptions, markInternal } from '../../runtime/internal.js';

/**
 * The job option under which the producer's context travels with a job (in `job.opts`, never in
 * `job.data`): `{ traceparent, tracestate?, baggage?, 'x-request-id' }`. Job options are stored
 * with the job in Redis, so the metadata survives delays, retries and worker restarts.
 */
export const JOB_CONTEXT_OPTION = 'nestjsContext';

/** The `ContextInit.source` of contexts opened for jobs. */
const JOB_CONTEXT_SOURCE = 'bullmq';

/** Options of {@link ContextBullModule.forRoot}. */
export interface ContextBullOptions {
  /**
   * Whether the producer's context (correlation id, trace, baggage) is restored from a job's
   * metadata. By default the app's trust policy decides, as for every entry: `trustInbound: true`
   * (its default) restores it, `false` does not, and a request predicate cannot vouch for a job
   * (there is no request), so it does not either. `true` restores it whatever the policy says: your
   * own Redis is a source you trust. `false` gives every job a fresh context.
   */
  trustJobMetadata?: boolean;
  /** Add the active context to every job added through the queues the app registers. Default: `true`. */
  propagate?: boolean;
}

/** Injection token of the {@link ContextBullOptions}. */
const CONTEXT_BULL_OPTIONS = Symbol.for('nestjs-context:bullmq-options');

const PROCESSOR_METADATA = 'bullmq:processor_metadata';
const ON_WORKER_EVENT_METADATA = 'bullmq:worker_events_metadata';
const TAG = Symbol.for('nestjs-context:bullmq');
const JOB_RECORD = Symbol.for('nestjs-context:bullmq-record');
const MAX_VALUE_LENGTH = 8192;
const MAX_KEYS = 16;
/**
 * The carrier field (no header can be named so) that holds the ids an instrumentation stamped on a
 * job in its own option (`@nestjs/observe`'s `observeTraceId`, with `nestjs-context/observe`): read
 * after the correlation id headers, under the same trust policy and `validate`.
 */
const STAMPED_IDS = 'stamped job ids';

type JobLike = { id?: unknown; data?: unknown; opts?: unknown; [JOB_RECORD]?: ContextRecord };

/** Job metadata as {@link readJobContext} hands it out: header name (lower-case) → value, or candidates in priority order. */
export type JobContextMetadata = Readonly<Record<string, string | readonly string[]>>;

interface Binding extends AppBinding {
  /** `trustJobMetadata` of this app's `ContextBullModule` (`undefined`: the app's trust policy decides). */
  readonly trust: boolean | undefined;
}

/** Processor classes and this app's instances of them → the apps (host and options) that imported this integration. */
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
 *
 * Header names are lower-cased. When several keys differ only in case, the exact lower-case key
 * comes first, then the others in the order the job holds them: for the correlation id headers
 * `idHeaders` (default: `x-request-id`, `x-correlation-id`) every such value is kept, as a list
 * when there are several (an invalid `X-Request-Id` then cannot hide a valid `x-request-id`: the
 * first valid one wins); any other header keeps the first value.
 */
export function readJobContext(
  job: { opts?: unknown } | undefined | null,
  idHeaders: readonly string[] = DEFAULT_REQUEST_HEADERS,
): JobContextMetadata | undefined {
  try {
    return readMetadata(job, idHeaders);
  } catch {
    return undefined;
  }
}

function readMetadata(job: { opts?: unknown } | undefined | null, idHeaders: readonly string[]): JobContextMetadata | undefined {
  const opts = job?.opts;
  if (typeof opts !== 'object' || opts === null) return undefined;
  const meta = (opts as Record<string, unknown>)[JOB_CONTEXT_OPTION];
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return undefined;
  const proto = Object.getPrototypeOf(meta) as unknown;
  if (proto !== Object.prototype && proto !== null) return undefined;
  const keys = Object.keys(meta);
  if (keys.length === 0 || keys.length > MAX_KEYS) return undefined;
  // Lower-case name → its values, the exact lower-case key's first, then the others in key order.
  const values = new Map<string, string[]>();
  for (const key of keys) {
    const value = (meta as Record<string, unknown>)[key];
    if (typeof value !== 'string' || value.length > MAX_VALUE_LENGTH) return undefined;
    const name = key.toLowerCase();
    const list = values.get(name);
    if (list === undefined) values.set(name, [value]);
    else if (key === name) list.unshift(value);
    else list.push(value);
  }
  const carrier: Record<string, string | readonly string[]> = Object.create(null) as Record<string, string | readonly string[]>;
  for (const [name, list] of values) {
    const ids = idHeaders.some((id) => id.toLowerCase() === name);
    carrier[name] = ids && list.length > 1 ? Object.freeze(list) : (list[0] as string);
  }
  return carrier;
}

/** The correlation id headers a job is read with: the app's outbound header (what producers write) first, then its request headers. */
function jobIdHeaders(host: ContextHost): readonly string[] {
  const o = host.options;
  const names = o.outboundHeader === undefined ? [...o.requestHeaders] : [o.outboundHeader, ...o.requestHeaders];
  return names.filter((name, i) => names.indexOf(name) === i);
}

/**
 * The record of one job object: restored from its metadata, or fresh. Anchored on the job object
 * so that the processor and the worker events of the same run share it; a retry fetches a new job
 * object and so gets a new record with the same correlation and trace id and its own span id.
 */
function recordForJob(host: ContextHost, job: JobLike, trust: boolean | undefined): ContextRecord {
  const anchored = anchoredRecord(job);
  if (anchored !== undefined && anchored.config === host.options) return anchored;
  // `trustJobMetadata: false` never reads the metadata; otherwise it goes through the app's trust
  // policy like every entry (`true` vouches for it). A failing validate/generate gives a fresh record
  // with a default id, reported once, and the job still runs.
  const names = trust === false ? undefined : jobIdHeaders(host);
  let carrier = names === undefined ? undefined : readJobContext(job, names);
  let idHeaders = names;
  const stamped = names === undefined ? undefined : stampedIds(job);
  if (stamped !== undefined) {
    carrier = Object.assign(Object.create(null) as Record<string, string | readonly string[]>, carrier, { [STAMPED_IDS]: stamped });
    idHeaders = [...(names as readonly string[]), STAMPED_IDS];
  }
  // The job is the anchor: an instrumentation that runs the job inside its own operation
  // (`nestjs-context/observe`) tells by it whether that operation's id is the job's stamp.
  const record =
    carrier === undefined
      ? host.create({ source: JOB_CONTEXT_SOURCE, anchor: job })
      : host.fromCarrier(carrier, JOB_CONTEXT_SOURCE, undefined, { trusted: trust === true, idHeaders, anchor: job });
  try {
    Object.defineProperty(job, JOB_RECORD, { value: record, configurable: true, writable: true, enumerable: false });
  } catch {
    // A frozen (or exotic) job object cannot hold the record: its worker events get their own.
  }
  return record;
}

/** The string ids stamped on `job` under the registered instrumentations' options (see `addJobIdOption`), if any. */
function stampedIds(job: JobLike): readonly string[] | undefined {
  const options = jobIdOptions();
  if (options.length === 0) return undefined;
  let out: string[] | undefined;
  try {
    const opts = job.opts;
    if (opts === null || typeof opts !== 'object') return undefined;
    for (const option of options) {
      const value = (opts as Record<string, unknown>)[option.name];
      if (typeof value === 'string' && value !== '' && value.length <= MAX_VALUE_LENGTH) (out ??= []).push(value);
    }
  } catch {
    return undefined; // options that cannot be read carry nothing
  }
  return out;
}

function anchoredRecord(job: JobLike): ContextRecord | undefined {
  try {
    const anchored = job[JOB_RECORD];
    return isContextRecord(anchored) ? anchored : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Returns job options carrying the active context (a copy of `opts`; `opts` itself is returned when
 * no context is active, when it already carries metadata, or for repeatable jobs, whose runs each
 * get a fresh context). For producers that do not go through a propagating queue. With
 * `nestjs-context/observe`, the correlation id also goes in `@nestjs/observe`'s own job option
 * (`observeTraceId`, unless set), so that Observe runs the job under the same id.
 *
 * @example await queue.add('send', data, contextJobOptions({ attempts: 3 }));
 */
export function contextJobOptions<O extends JobsOptions | undefined>(opts?: O): O | JobsOptions {
  const record = storage.getStore();
  if (record === undefined) return opts as O;
  if (opts !== undefined && opts !== null) {
    if ((opts as Record<string, unknown>)[JOB_CONTEXT_OPTION] !== undefined) return opts;
    if ((opts as { repeat?: unknown }).repeat !== undefined) return opts;
  }
  const out: Record<string, unknown> = { ...(opts ?? {}), [JOB_CONTEXT_OPTION]: outboundHeaders(record) };
  for (const option of jobIdOptions()) {
    if (out[option.name] !== undefined) continue;
    const id = record.correlationId;
    if (option.accepts(id)) out[option.name] = id;
  }
  return out as JobsOptions;
}

/** The part of a bullmq `Queue` this integration patches. */
export interface QueueLike {
  /** Adds one job (`Queue.add`); once patched, its options carry the active context's headers. */
  add(name: never, data: never, opts?: JobsOptions): Promise<unknown>;
  /** Adds several jobs (`Queue.addBulk`); once patched, each job's options carry the active context's headers. */
  addBulk(jobs: never): Promise<unknown>;
}

/**
 * Makes every job added to `queue` (`add`, `addBulk`) carry the active context — zero per-call
 * code. `ContextBullModule` does this for the queues the app registers (`BullModule.registerQueue`);
 * call it for queues you create yourself. Idempotent.
 *
 * @example const queue = propagateContext(new Queue('mail', { connection }));
 */
export function propagateContext<Q extends QueueLike>(queue: Q): Q {
  patchQueue(queue);
  return queue;
}

/**
 * Patches `add`/`addBulk` of `queue` (own properties over the prototype's methods); returns the
 * function that takes the patch off again, or `undefined` when the queue was patched already.
 */
function patchQueue(queue: QueueLike): (() => void) | undefined {
  const target = queue as unknown as Record<string | symbol, unknown>;
  if (target[TAG] === true) return undefined;
  const ownAdd = Object.getOwnPropertyDescriptor(target, 'add');
  const ownAddBulk = Object.getOwnPropertyDescriptor(target, 'addBulk');
  const add = queue.add as unknown as AnyMethod;
  const addBulk = queue.addBulk as unknown as AnyMethod;
  const patchedAdd = function (this: unknown, name: unknown, data: unknown, opts?: JobsOptions) {
    return add.call(this, name, data, contextJobOptions(opts));
  };
  const patchedAddBulk = function (this: unknown, jobs: unknown) {
    if (storage.getStore() === undefined || !Array.isArray(jobs)) return addBulk.call(this, jobs);
    const withContext = jobs.map((job: { opts?: JobsOptions }) =>
      job !== null && typeof job === 'object' ? { ...job, opts: contextJobOptions(job.opts) } : job,
    );
    return addBulk.call(this, withContext);
  };
  Object.defineProperty(target, TAG, { value: true, configurable: true });
  target.add = patchedAdd;
  target.addBulk = patchedAddBulk;
  return () => {
    // Patched over since by someone else: their patch calls ours, which stays.
    if (target.add !== patchedAdd || target.addBulk !== patchedAddBulk) return;
    restoreOwn(target, 'add', ownAdd);
    restoreOwn(target, 'addBulk', ownAddBulk);
    delete target[TAG];
  };
}

function restoreOwn(target: Record<string, unknown>, key: string, own: PropertyDescriptor | undefined): void {
  if (own === undefined) delete target[key];
  else Object.defineProperty(target, key, own);
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
  const trust = options.trustJobMetadata;
  return function (this: unknown, job: J, ...rest: A): R {
    const host = resolveHost('contextProcessor()', this);
    return runInRecord(recordForJob(host, job as unknown as JobLike, trust), () => processor.call(this, job, ...rest));
  };
}

/** `process(job, …)` of a processor class, run inside the job's context. */
function wrapProcess(original: AnyMethod): AnyMethod {
  return function (this: unknown, job: unknown, ...rest: unknown[]) {
    const binding = bindings.of(this);
    if (binding === undefined || binding.host.closed || !isJob(job)) return original.call(this, job, ...rest);
    return runInRecord(recordForJob(binding.host, job, binding.trust), () => original.call(this, job, ...rest));
  };
}

/** An `@OnWorkerEvent()` handler: inside the job's context when its first argument is a job, else a fresh one. */
function wrapWorkerEvent(original: AnyMethod): AnyMethod {
  return function (this: unknown, ...args: unknown[]) {
    const binding = bindings.of(this);
    if (binding === undefined || binding.host.closed) return original.apply(this, args);
    const first = args[0];
    const record = isJob(first) ? recordForJob(binding.host, first, binding.trust) : binding.host.create({ source: JOB_CONTEXT_SOURCE });
    return runInRecord(record, () => original.apply(this, args));
  };
}

function isProcessorClass(type: object): boolean {
  const reflect = Reflect as unknown as { getMetadata?(key: string, target: object): unknown };
  return reflect.getMetadata?.(PROCESSOR_METADATA, type) !== undefined;
}

function isWorkerEventHandler(method: object): boolean {
  const reflect = Reflect as unknown as { getMetadata?(key: string, target: object): unknown };
  return reflect.getMetadata?.(ON_WORKER_EVENT_METADATA, method) !== undefined;
}

interface WorkerLike {
  processFn?: unknown;
}

/**
 * Finds the app's `@Processor()` classes and registered queues and connects them to the context.
 * `process` and the `@OnWorkerEvent()` methods of processor classes are wrapped while the app is
 * being built (before `@nestjs/bullmq` binds them), like every integration's methods (see
 * {@link MethodExplorer}); queues as soon as they exist, until the app closes. @internal
 */
@Injectable()
class ContextBullExplorer extends MethodExplorer<Binding> implements OnApplicationBootstrap {
  private readonly propagate: boolean;

  constructor(
    discovery: DiscoveryService,
    @Optional() @Inject(ContextHost) host: ContextHost | undefined,
    @Optional() @Inject(CONTEXT_BULL_OPTIONS) options: ContextBullOptions = {},
  ) {
    super(discovery, bindings, { host: hostOrThrow(host, 'ContextBullModule'), trust: options?.trustJobMetadata }, TAG);
    this.propagate = options?.propagate !== false;
    // Providers are not instantiated yet, but their classes are known: wrapping the prototypes now
    // happens before any lifecycle hook, so before @nestjs/bullmq binds `process` to its workers.
    this.scan();
  }

  protected override wantsClass(type: object): boolean {
    return isProcessorClass(type);
  }

  protected wrapperOf(key: string, method: AnyMethod): WrapperMaker | undefined {
    if (key === 'process') return wrapProcess;
    return isWorkerEventHandler(method) ? wrapWorkerEvent : undefined;
  }

  /**
   * Wraps processors given as `useValue`/`useFactory` providers and binds this app's processor
   * instances (see {@link MethodExplorer.onModuleInit}), and makes the registered queues propagate
   * the context until the app closes.
   */
  override onModuleInit(): void {
    super.onModuleInit();
    if (this.propagate) {
      for (const wrapper of this.discovery.getProviders()) {
        if (!wrapper.isDependencyTreeStatic() || !(wrapper.instance instanceof Queue)) continue;
        const undo = patchQueue(wrapper.instance as unknown as QueueLike);
        if (undo !== undefined) this.binding.host.onClose(undo);
      }
    }
    this.wrapWorkers();
  }

  /** Request-scoped processors are built before `process` runs: enter the job's context one step earlier. */
  onApplicationBootstrap(): void {
    this.wrapWorkers();
  }

  /**
   * Wraps the worker of each request-scoped processor of this app, so that Nest builds the processor
   * (and whatever it injects, `MyContext` included) inside the job's context of this app.
   */
  private wrapWorkers(): void {
    for (const wrapper of this.discovery.getProviders()) {
      const instance = wrapper.instance as { _worker?: WorkerLike } | null | undefined;
      if (instance === null || typeof instance !== 'object' || !this.bindsClass(instance.constructor)) continue;
      if (wrapper.isDependencyTreeStatic()) continue;
      const worker = instance._worker;
      const fn = worker?.processFn;
      if (worker === undefined || typeof fn !== 'function' || (fn as unknown as Record<symbol, unknown>)[TAG] === true) continue;
      const binding = this.binding;
      const original = fn as AnyMethod;
      const wrapped = function (this: unknown, job: unknown, ...rest: unknown[]) {
        if (!isJob(job)) return original.call(this, job, ...rest);
        return runInRecord(recordForJob(binding.host, job, binding.trust), () => original.call(this, job, ...rest));
      };
      Object.defineProperty(wrapped, TAG, { value: true });
      worker.processFn = wrapped;
    }
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

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextBullExplorer, ContextBullModule);
