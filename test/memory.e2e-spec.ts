// Proves that nothing the library creates for a request outlives that request: the user's context
// object, the library's per-request record and the trace it parses are all registered in a
// FinalizationRegistry while the request runs; after a few hundred requests (every access path,
// untouched requests, async handlers, error responses) and forced garbage collections, every one of
// them must have been collected, while the app is still up. Not a timing test.
//
// One bounded exception, which is NestJS's and not the library's: for a request-scoped controller,
// Nest keeps the last request's DI "settlement" promise on the controller's InstanceWrapper
// (`settlementSignal.settledPromise`). That promise was created inside the request, so its async
// context (AsyncLocalStorage store) is the request's record, and through it the context object. It is
// replaced by the next request on that controller: at most one request per request-scoped controller,
// never growing. The test pins that down exactly: only the last request to the request-scoped route
// may survive, and the next request to that route releases it.
import 'reflect-metadata';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Controller, Get, Inject, Injectable, Module, Req, type DynamicModule, type INestApplication } from '@nestjs/common';
import request from 'supertest';
import { ContextModule, ContextService, Ctx, currentContext, getOutboundHeaders, type ContextInit } from '../src/index.js';
import { RECORD_KEY } from '../src/constants.js';
import { bootApp, platforms } from './utils/platforms.js';

// Jest runs without --expose-gc; the flag takes effect for contexts created after it is set.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

type Kind = 'context' | 'record' | 'trace' | 'outbound';

/** Counts, per kind, the objects registered for finalization and those already collected. */
class Tracker {
  readonly registered = new Map<Kind, number>();
  readonly collected = new Map<Kind, number>();
  /** Labels (`kind path id`) of the objects not collected yet, to name any survivor. */
  readonly pending = new Set<string>();
  private readonly registry = new FinalizationRegistry<string>((label) => {
    const kind = label.split(' ')[0] as Kind;
    this.collected.set(kind, (this.collected.get(kind) ?? 0) + 1);
    this.pending.delete(label);
  });

  /** Watches `target` (held weakly) under `kind`, labelled with the request it belongs to. */
  track(kind: Kind, target: object | undefined, request: string): void {
    if (target === undefined) return;
    const label = `${kind} ${request} #${this.registered.get(kind) ?? 0}`;
    this.registry.register(target, label);
    this.pending.add(label);
    this.registered.set(kind, (this.registered.get(kind) ?? 0) + 1);
  }

  /** Objects registered but not (yet) collected, per kind. */
  alive(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [kind, n] of this.registered) out[kind] = n - (this.collected.get(kind) ?? 0);
    return out;
  }

  /** Total of {@link alive}. */
  aliveTotal(): number {
    return Object.values(this.alive()).reduce((a, b) => a + b, 0);
  }
}

let tracker = new Tracker();

/** The user's context class; every instance the factory builds is tracked. */
class MemContext {
  readonly correlationId: string;
  userId?: string;
  /** A payload large enough that a leak would also show in the heap. */
  readonly payload = new Array<number>(64).fill(1);
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

type RawRequest = { [RECORD_KEY]?: object; raw?: { [RECORD_KEY]?: object }; url?: string; headers: Record<string, unknown> };

/** `path id` of a request, for labels. */
function describeRequest(req: RawRequest): string {
  return `${req.url} ${String(req.headers['x-request-id'])}`;
}

/** Tracks the library's record hanging on the request (created by the entry, even when untouched). */
function trackRecord(req: RawRequest): void {
  tracker.track('record', (req.raw ?? req)[RECORD_KEY], describeRequest(req));
}

const tick = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

@Injectable()
class Audit {
  constructor(private readonly context: ContextService<MemContext>) {}
  /** Reads the context from a singleton, after an await. */
  async note(): Promise<string> {
    await tick(1);
    return this.context.get().correlationId;
  }
}

@Controller('mem')
class MemController {
  constructor(
    private readonly context: ContextService<MemContext>,
    private readonly audit: Audit,
  ) {}

  /** The context is never touched: only the record exists. */
  @Get('untouched')
  untouched(@Req() req: RawRequest): string {
    trackRecord(req);
    return 'ok';
  }

  /** ContextService read, trace parsed, outbound headers built into a request-like object. */
  @Get('service')
  service(@Req() req: RawRequest): string {
    trackRecord(req);
    const ctx = this.context.get();
    tracker.track('trace', this.context.trace, describeRequest(req));
    const outbound = { headers: getOutboundHeaders() };
    tracker.track('outbound', outbound.headers, describeRequest(req));
    return ctx.correlationId;
  }

  /** @Ctx() read, then currentContext after an async hop. */
  @Get('param')
  async param(@Req() req: RawRequest, @Ctx() ctx: MemContext): Promise<string> {
    trackRecord(req);
    await tick(1);
    currentContext.userId = 'u';
    return `${ctx.correlationId}:${await this.audit.note()}`;
  }

  /** The handler fails after reading the context: a 500 through Nest's exception layer. */
  @Get('fail')
  fail(@Req() req: RawRequest): never {
    trackRecord(req);
    throw new Error(`failed in ${String(currentContext.correlationId)}`);
  }
}

/** Constructor injection of the user's class: a request-scoped controller. */
@Controller('injected')
class InjectedController {
  constructor(@Inject(MemContext) private readonly ctx: MemContext) {}
  @Get()
  index(@Req() req: RawRequest): string {
    trackRecord(req);
    return this.ctx.correlationId;
  }
}

/** The app under test, in the default configuration or the fastest one (`interceptor: false`). */
function appModule(interceptor: boolean): DynamicModule {
  @Module({})
  class MemModule {}
  return {
    module: MemModule,
    imports: [
      ContextModule.forRoot(MemContext, {
        interceptor,
        factory: (init) => {
          const ctx = new MemContext(init);
          tracker.track('context', ctx, `${init.request?.url ?? '?'} ${init.correlationId}`);
          return ctx;
        },
      }),
    ],
    controllers: [MemController, InjectedController],
    providers: [Audit],
  };
}

const PATHS = ['/mem/untouched', '/mem/service', '/mem/param', '/mem/fail', '/injected'] as const;
const REQUESTS = 300;
const BATCH = 20;

/**
 * Forces full collections until only the objects labelled with `allowed` (a request id) are left,
 * for at most about 3 s. Waiting matters: Node's HTTP layer caches the `Date` header with a timer of
 * up to 1 s that it creates lazily inside whichever request first needs it, so that request's async
 * context is held until the timer fires (bounded, not a leak).
 */
async function collect(allowed: string): Promise<void> {
  const started = Date.now();
  const others = () => [...tracker.pending].filter((label) => !label.includes(` ${allowed} `));
  for (let i = 0; others().length > 0 && Date.now() - started < 3000; i++) {
    gc();
    // Finalization callbacks run in a later task.
    await tick(i < 5 ? 0 : 100);
  }
  // A few more collections, so that whatever can still be collected is.
  for (let i = 0; i < 3; i++) {
    gc();
    await tick(10);
  }
}

/** Sends one request (without keep-alive, so no socket or parser is left holding it) and checks it. */
async function send(base: string, path: string, id: string): Promise<void> {
  const res = await request(base).get(path).set('x-request-id', id).set('connection', 'close');
  expect(res.headers['x-request-id']).toBe(id);
  expect(res.status).toBe(path === '/mem/fail' ? 500 : 200);
}

describe.each(platforms)('no per-request object outlives its request (%s)', (_name, makeAdapter) => {
  describe.each([
    ['default configuration', true],
    ['interceptor: false', false],
  ])('%s', (_config, interceptor) => {
    let app: INestApplication;
    let base: string;
    beforeAll(async () => {
      app = await bootApp(appModule(interceptor), makeAdapter);
      await app.listen(0, '127.0.0.1');
      base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    });
    afterAll(async () => {
      await app.close();
    });

    it(`collects the contexts, records and traces of ${REQUESTS} requests while the app is still up`, async () => {
      tracker = new Tracker();
      for (let start = 0; start < REQUESTS; start += BATCH) {
        await Promise.all(Array.from({ length: BATCH }, (_, j) => send(base, PATHS[(start + j) % PATHS.length] as string, `mem-${start + j}`)));
      }
      // Every request made a record, and every path but `untouched` built its context exactly once.
      expect(tracker.registered.get('record')).toBe(REQUESTS);
      expect(tracker.registered.get('context')).toBe(REQUESTS - REQUESTS / PATHS.length);
      expect(tracker.registered.get('trace')).toBe(REQUESTS / PATHS.length);

      // The last request to the request-scoped route, alone and last (see the note at the top).
      await send(base, '/injected', 'mem-last');
      await collect('mem-last');
      const survivors = [...tracker.pending];
      expect(survivors.filter((label) => !label.includes(' mem-last '))).toEqual([]);
      expect(survivors.length).toBeLessThanOrEqual(2);

      // The next request to that route releases it: nothing of 'mem-last' is left.
      await send(base, '/injected', 'mem-next');
      await collect('mem-next');
      expect([...tracker.pending].filter((label) => !label.includes(' mem-next '))).toEqual([]);
      const registered = REQUESTS + 2;
      expect(tracker.registered.get('record')).toBe(registered);
      expect(tracker.aliveTotal()).toBeLessThanOrEqual(2);
    });
  });
});
