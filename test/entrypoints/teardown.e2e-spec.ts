import 'reflect-metadata';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Inject, Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BullModule, OnWorkerEvent, Processor, WorkerHost } from '@nestjs/bullmq';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { Queue, type Job } from 'bullmq';
import { ContextModule, ContextService, currentContext } from 'nestjs-context';
import { ContextBullModule, JOB_CONTEXT_OPTION } from 'nestjs-context/bullmq';
import { ContextEventEmitterModule, type ListenerContextMode } from 'nestjs-context/event-emitter';
import { ContextScheduleModule } from 'nestjs-context/schedule';
import { ContextHost } from '../../src/runtime/context-host.js';
import { explorerState } from '../../src/runtime/method-explorer.js';
import { MyContext } from '../fixtures/app-context.js';
import { brokers, requireBroker, uniqueName } from '../utils/brokers.js';
import { Log } from './log.js';

/**
 * Full teardown (issue #13): every wrapper an app put on a user's class comes off when the last app
 * that binds the class closes, and nothing of a closed app stays reachable through a shared class.
 * Every case starts from and ends at the untouched classes, so the cases pass in any order (the
 * plain app is created both after and before the apps with the integrations).
 */

const REDIS = { host: brokers.redis.host, port: brokers.redis.port };
const QUEUE = uniqueName('teardown');
const APP = Symbol('app label');

interface Seen {
  key: string;
  app: string;
  active: boolean;
  id: string | undefined;
  throws: boolean;
}

const seen = new Log<Seen>();

/** Records whether a context was active where a user method ran. */
function look(context: ContextService<MyContext>, app: string, key: string): Seen {
  let throws = false;
  try {
    void currentContext.correlationId;
  } catch {
    throws = true;
  }
  const s: Seen = { key, app, active: context.active, id: context.correlationId, throws };
  seen.push(s);
  return s;
}

@Injectable()
class Ticker {
  constructor(
    private readonly context: ContextService<MyContext>,
    @Inject(APP) private readonly app: string,
  ) {}

  @Interval(20)
  tick(key = `tick:${this.app}`): Seen {
    return look(this.context, this.app, key);
  }
}

@Injectable()
class Listener {
  constructor(
    private readonly context: ContextService<MyContext>,
    @Inject(APP) private readonly app: string,
  ) {}

  @OnEvent('teardown.ping')
  heard(key: string): Seen {
    return look(this.context, this.app, `event:${key}`);
  }
}

// A short stalled-job check: bullmq keeps its timer for one interval after a worker that just started closes.
@Processor(QUEUE, { stalledInterval: 500 })
class Jobs extends WorkerHost {
  constructor(
    private readonly context: ContextService<MyContext>,
    @Inject(APP) private readonly app: string,
  ) {
    super();
  }

  async process(job: Job<{ key: string }>): Promise<Seen> {
    return look(this.context, this.app, `job:${job.data.key}`);
  }

  @OnWorkerEvent('completed')
  done(job: Job<{ key: string }>): Seen {
    return look(this.context, this.app, `done:${job.data.key}`);
  }
}

/** The user's methods, as the classes define them before any app exists. */
const METHODS = [
  [Ticker, 'tick'],
  [Listener, 'heard'],
  [Jobs, 'process'],
  [Jobs, 'done'],
] as const;
/** What calls on an instance of `type` reach as method `key`. */
const methodOf = (type: (typeof METHODS)[number][0], key: string): object => (type.prototype as unknown as Record<string, object>)[key] as object;
const originals = METHODS.map(([type, key]) => Object.getOwnPropertyDescriptor(type.prototype, key));
const metadataKeys = METHODS.map(([type, key]) => Reflect.getMetadataKeys(methodOf(type, key)));

/** The user's classes carry exactly their own methods again, metadata included, and no app binds anything. */
function expectOriginals(): void {
  METHODS.forEach(([type, key], i) => {
    const now = Object.getOwnPropertyDescriptor(type.prototype, key);
    expect({ method: `${type.name}.${key}`, same: now?.value === originals[i]?.value }).toEqual({ method: `${type.name}.${key}`, same: true });
    expect(now).toEqual(originals[i]);
    expect(Reflect.getMetadataKeys(methodOf(type, key))).toEqual(metadataKeys[i]);
  });
  expect(explorerState()).toEqual({ bound: 0, wrappers: 0 });
}

/** Every user method is wrapped (some app with the integrations is alive). */
function expectWrapped(): void {
  METHODS.forEach(([type, key], i) => {
    expect({ method: `${type.name}.${key}`, wrapped: methodOf(type, key) !== originals[i]?.value }).toEqual({ method: `${type.name}.${key}`, wrapped: true });
  });
}

interface Integrations {
  mode?: ListenerContextMode;
  trustJobMetadata?: boolean;
}

/**
 * An app with the user's classes; with `integrations`, it also imports the context integrations.
 * `bull: false` leaves BullMQ (the processor class, its modules and integration) out.
 */
async function boot(label: string, integrations?: Integrations, bull = true): Promise<INestApplicationContext> {
  @Module({
    imports: [
      ContextModule.forRoot(MyContext),
      ScheduleModule.forRoot(),
      EventEmitterModule.forRoot(),
      ...(bull ? [BullModule.forRoot({ connection: REDIS }), BullModule.registerQueue({ name: QUEUE })] : []),
      ...(integrations === undefined
        ? []
        : [
            ContextScheduleModule.forRoot(),
            ContextEventEmitterModule.forRoot({ mode: integrations.mode }),
            ...(bull ? [ContextBullModule.forRoot({ trustJobMetadata: integrations.trustJobMetadata })] : []),
          ]),
    ],
    providers: [Ticker, Listener, ...(bull ? [Jobs] : []), { provide: APP, useValue: label }],
  })
  class AppModule {}
  return NestFactory.createApplicationContext(AppModule, { logger: false });
}

/** A job object as a worker hands it to `process`, with optional context metadata. */
function fakeJob(key: string, metadata?: Record<string, string>): Job<{ key: string }> {
  return { id: key, data: { key }, opts: metadata === undefined ? {} : { [JOB_CONTEXT_OPTION]: metadata } } as unknown as Job<{ key: string }>;
}

/** Calls every user method of `app` directly (through the prototype) and returns what each saw. */
async function callAll(app: INestApplicationContext, key: string): Promise<Seen[]> {
  const tick = app.get(Ticker).tick(`direct-tick:${key}`);
  app.get(EventEmitter2).emit('teardown.ping', key);
  const [event] = await seen.wait(`event:${key}`);
  const job = await app.get(Jobs).process(fakeJob(key));
  const done = app.get(Jobs).done(fakeJob(key));
  return [tick, event as Seen, job, done];
}

const withContext = (s: Seen) => ({ key: s.key, active: s.active, throws: s.throws });

describe('full teardown: the wrappers of schedule, event-emitter and BullMQ leave the user classes on app.close()', () => {
  let queue: Queue;

  beforeAll(async () => {
    await requireBroker('redis');
    queue = new Queue(QUEUE, { connection: REDIS });
  });

  afterAll(async () => {
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
  });

  it('50 apps created and closed one after another: after each close the methods are the originals; a later app without the integrations gets no context', async () => {
    expectOriginals();
    for (let i = 0; i < 50; i++) {
      const app = await boot(`with-${i}`, {});
      try {
        expectWrapped();
        for (const s of await callAll(app, `with-${i}`)) expect(withContext(s)).toEqual({ key: s.key, active: true, throws: false });
      } finally {
        await app.close();
      }
      expectOriginals();
    }

    const plain = await boot('plain-after');
    try {
      expectOriginals();
      // Run by the frameworks themselves: the scheduler, the emitter, a real job through Redis.
      const [tick] = await seen.wait('tick:plain-after');
      await queue.add('x', { key: 'plain-after' }, { [JOB_CONTEXT_OPTION]: { 'x-request-id': 'from-metadata' } } as never);
      const [job] = await seen.wait('job:plain-after');
      const [done] = await seen.wait('done:plain-after');
      for (const s of [tick as Seen, job as Seen, done as Seen, ...(await callAll(plain, 'plain-after'))]) {
        expect(withContext(s)).toEqual({ key: s.key, active: false, throws: true });
      }
    } finally {
      await plain.close();
    }
    expectOriginals();
  }, 120_000);

  it('nothing keeps a closed app reachable through a shared class: 20 apps with schedule and event listeners, every ContextHost is collected', async () => {
    // Without BullMQ: @nestjs/bullmq keeps closed apps reachable by itself (with or without this integration).
    expectOriginals();
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const collected = new Set<number>();
    const registry = new FinalizationRegistry<number>((i) => collected.add(i));
    // Each app lives only inside this function, so no stack frame of the test keeps one.
    const cycle = async (i: number): Promise<void> => {
      const app = await boot(`gc-${i}`, {}, false);
      try {
        expect(withContext(app.get(Ticker).tick(`gc-${i}`))).toEqual({ key: `gc-${i}`, active: true, throws: false });
        registry.register(app.get(ContextHost), i);
      } finally {
        await app.close();
      }
    };
    for (let i = 0; i < 20; i++) await cycle(i);
    expectOriginals();
    for (let round = 0; round < 40 && collected.size < 20; round++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      gc();
    }
    expect(Array.from({ length: 20 }, (_, i) => i).filter((i) => !collected.has(i))).toEqual([]);
  });

  it('an app without the integrations created first: its objects get no context while apps with them share the classes, and after they close', async () => {
    expectOriginals();
    const plain = await boot('plain-first');
    const apps: (INestApplicationContext | undefined)[] = [];
    try {
      for (let i = 0; i < 3; i++) apps.push(await boot(`first-${i}`, {}));
      expectWrapped();
      for (const s of await callAll(plain, 'plain-first-while')) expect(withContext(s)).toEqual({ key: s.key, active: false, throws: true });
      // Closed in neither creation nor reverse order: the others keep working, the plain app never gets a context.
      for (const [round, index] of [1, 0, 2].entries()) {
        for (const [i, app] of apps.entries()) {
          if (app === undefined) continue;
          for (const s of await callAll(app, `first-${i}-round-${round}`)) expect(withContext(s)).toEqual({ key: s.key, active: true, throws: false });
        }
        const app = apps[index];
        apps[index] = undefined;
        await app?.close();
        if (round < 2) expectWrapped();
      }
      expectOriginals();
      for (const s of await callAll(plain, 'plain-first-after')) expect(withContext(s)).toEqual({ key: s.key, active: false, throws: true });
      await queue.add('x', { key: 'plain-first' });
      const [job] = await seen.wait('job:plain-first');
      expect(withContext(job!)).toEqual({ key: 'job:plain-first', active: false, throws: true });
    } finally {
      for (const app of apps) await app?.close();
      await plain.close();
    }
    expectOriginals();
  }, 60_000);

  for (const order of [
    ['A', 'B'],
    ['B', 'A'],
  ] as const) {
    it(`two apps sharing the listener and processor classes, ${order[0]} closed first: each keeps its own options while alive, the other works after the first closes, the wrappers go with the last`, async () => {
      expectOriginals();
      // A: fresh listener contexts, job metadata not trusted; B: the emitter's context, job metadata trusted.
      const apps = { A: await boot(`shared-A-${order[0]}`, { mode: 'fresh', trustJobMetadata: false }), B: await boot(`shared-B-${order[0]}`, { mode: 'inherit', trustJobMetadata: true }) };
      const instances = { A: apps.A.get(Jobs), B: apps.B.get(Jobs) };
      const open = new Set<'A' | 'B'>(['A', 'B']);
      let n = 0;
      const check = async (name: 'A' | 'B'): Promise<void> => {
        const app = apps[name];
        const key = `shared-${order[0]}-${name}-${++n}`;
        app.get<ContextService<MyContext>>(ContextService).run(() => app.get(EventEmitter2).emit('teardown.ping', key), { correlationId: `emitter-${n}` });
        const [event] = await seen.wait(`event:${key}`);
        const job = await app.get(Jobs).process(fakeJob(key, { 'x-request-id': `meta-${n}` }));
        if (name === 'A') {
          expect({ event: event!.id === `emitter-${n}`, job: job.id }).toEqual({ event: false, job: expect.stringMatching(/^[0-9a-f-]{36}$/) });
        } else {
          expect({ event: event!.id, job: job.id }).toEqual({ event: `emitter-${n}`, job: `meta-${n}` });
        }
        expect(event!.active).toBe(true);
      };
      try {
        await check('A');
        await check('B');
        open.delete(order[0]);
        await apps[order[0]].close();
        expectWrapped();
        await check(order[1]);
        await check(order[1]);
        // The closed app's own objects get no context any more.
        const closed = await instances[order[0]].process(fakeJob(`closed-${order[0]}`, { 'x-request-id': 'meta-closed' }));
        expect(withContext(closed)).toEqual({ key: `job:closed-${order[0]}`, active: false, throws: true });
      } finally {
        for (const name of order) if (open.delete(name)) await apps[name].close();
      }
      expectOriginals();
    });
  }
});
