import 'reflect-metadata';
import { Controller, Get, Injectable, Module, type INestApplication } from '@nestjs/common';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { ScheduleModule, Timeout } from '@nestjs/schedule';
import { MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import request from 'supertest';
import {
  ContextConfigError,
  ContextModule,
  ContextNotActiveError,
  ContextService,
  type ContextInit,
  type ContextModuleAsyncOptions,
  type ContextModuleOptions,
  type ContextModuleStaticOptions,
} from 'nestjs-context';
import { ContextEventEmitterModule } from 'nestjs-context/event-emitter';
import { ContextScheduleModule } from 'nestjs-context/schedule';
import { ContextWsModule } from 'nestjs-context/websockets';
import { bootApp, platforms } from './utils/platforms.js';
import { Log, sleep } from './entrypoints/log.js';

/** The user's class: fields, a method that uses `this`, an accessor. */
class ProxyContext {
  correlationId: string;
  userId?: string;
  readonly source: string;
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
    this.source = init.source;
  }
  describe(): string {
    return `${this.userId ?? 'anonymous'}@${this.correlationId}`;
  }
  get short(): string {
    return this.correlationId.slice(0, 8);
  }
}

/** How often each singleton was built (once each, whatever the number of requests). */
const built = { controller: 0, reader: 0, listener: 0, job: 0, gateway: 0 };

interface Heard {
  key: string;
  id: string;
  serviceId: string | undefined;
}
const heard = new Log<Heard>();
type JobRun = { key: string; id: string; source: string; instance: boolean; serviceId: string | undefined };
/** Replaced for every app booted, so each app's run is waited for. */
let jobRuns = new Log<JobRun>();

const jitter = (): number => Math.floor(Math.random() * 12);

@Injectable()
class Reader {
  constructor(readonly ctx: ProxyContext) {
    built.reader++;
  }
  read(): string {
    return this.ctx.correlationId;
  }
}

interface Answer {
  id: string;
  afterAwait: string;
  viaReader: string;
  described: string;
  detached: string;
  short: string;
  userIdInService: string | undefined;
  has: boolean;
  hasMissing: boolean;
  instance: boolean;
  keys: string[];
  json: Record<string, unknown>;
}

@Controller()
class ProxyController {
  constructor(
    private readonly ctx: ProxyContext,
    private readonly reader: Reader,
    private readonly context: ContextService<ProxyContext>,
    private readonly events: EventEmitter2,
  ) {
    built.controller++;
  }

  @Get('who')
  async who(): Promise<Answer> {
    const id = this.ctx.correlationId;
    this.ctx.userId = `user-of-${id}`; // a write through the proxy, on the real context object
    await sleep(jitter());
    const afterAwait = this.ctx.correlationId;
    await new Promise<void>((resolve) => setImmediate(resolve));
    const detachedDescribe = this.ctx.describe; // read off the proxy, called later: bound to the real object
    await Promise.resolve().then(() => sleep(jitter()));
    this.events.emit('proxy.heard', id);
    return {
      id,
      afterAwait,
      viaReader: this.reader.read(),
      described: this.ctx.describe(),
      detached: detachedDescribe(),
      short: this.ctx.short,
      userIdInService: this.context.get().userId,
      has: 'userId' in this.ctx,
      hasMissing: 'nothing' in this.ctx,
      instance: this.ctx instanceof ProxyContext,
      keys: Object.keys(this.ctx).sort(),
      json: JSON.parse(JSON.stringify(this.ctx)) as Record<string, unknown>,
    };
  }
}

@Injectable()
class Listener {
  constructor(
    private readonly ctx: ProxyContext,
    private readonly context: ContextService<ProxyContext>,
  ) {
    built.listener++;
  }
  @OnEvent('proxy.heard')
  onHeard(key: string): void {
    heard.push({ key, id: this.ctx.correlationId, serviceId: this.context.correlationId });
  }
}

@Injectable()
class Job {
  constructor(
    private readonly ctx: ProxyContext,
    private readonly context: ContextService<ProxyContext>,
  ) {
    built.job++;
  }
  @Timeout('proxy-job', 5)
  run(): void {
    jobRuns.push({
      key: 'job',
      id: this.ctx.correlationId,
      source: this.ctx.source,
      instance: this.ctx instanceof ProxyContext,
      serviceId: this.context.correlationId,
    });
  }
}

@Module({
  imports: [
    ContextModule.forRoot(ProxyContext, { injection: 'proxy' }),
    EventEmitterModule.forRoot(),
    ContextEventEmitterModule.forRoot(),
    ScheduleModule.forRoot(),
    ContextScheduleModule.forRoot(),
  ],
  controllers: [ProxyController],
  providers: [Reader, Listener, Job],
})
class ProxyAppModule {}

const REQUESTS = 300;

/** JSON with every object's keys sorted, to compare answers whatever their key order or realm. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );

describe.each(platforms)("injection: 'proxy' (%s)", (_name, makeAdapter) => {
  let app: INestApplication;
  let base: string;
  beforeAll(async () => {
    for (const key of Object.keys(built) as (keyof typeof built)[]) built[key] = 0;
    jobRuns = new Log<JobRun>();
    app = await bootApp(ProxyAppModule, makeAdapter);
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app.close();
  });

  it(`${REQUESTS} concurrent overlapping requests each read, write and call their own context; every injector stays one singleton`, async () => {
    const ids = Array.from({ length: REQUESTS }, (_, i) => `proxy-${i}-${Math.random().toString(36).slice(2, 8)}`);
    const results = await Promise.all(
      ids.map(async (id) => {
        const res = await fetch(`${base}/who`, { headers: { 'x-request-id': id } });
        return { id, status: res.status, header: res.headers.get('x-request-id'), body: (await res.json()) as Answer };
      }),
    );
    const wrong = results.filter(({ id, status, header, body }) => {
      const expected: Answer = {
        id,
        afterAwait: id,
        viaReader: id,
        described: `user-of-${id}@${id}`,
        detached: `user-of-${id}@${id}`,
        short: id.slice(0, 8),
        userIdInService: `user-of-${id}`,
        has: true,
        hasMissing: false,
        instance: true,
        keys: ['correlationId', 'source', 'userId'],
        json: { correlationId: id, source: 'http', userId: `user-of-${id}` },
      };
      return status !== 200 || header !== id || canonical(body) !== canonical(expected);
    });
    expect(wrong).toEqual([]);
    // The listener ran inside each request's context and read it through its own injected proxy.
    const listened = await Promise.all(ids.map((id) => heard.wait(id)));
    expect(listened.flat().filter((h) => h.id !== h.key || h.serviceId !== h.key)).toEqual([]);
    expect(built).toEqual({ controller: 1, reader: 1, listener: 1, job: 1, gateway: 0 });
  });

  it('the controller and services are singletons: the same instances across requests, and app.get() resolves them', async () => {
    const controller = app.get(ProxyController);
    const reader = app.get(Reader);
    expect(reader.ctx).toBe(app.get(ProxyContext)); // one proxy per app
    await request(app.getHttpServer()).get('/who').set('x-request-id', 'first').expect(200);
    await request(app.getHttpServer()).get('/who').set('x-request-id', 'second').expect(200);
    expect(app.get(ProxyController)).toBe(controller);
    expect(app.get(Reader)).toBe(reader);
    expect(built.controller).toBe(1);
    expect(built.reader).toBe(1);
  });

  it('a scheduled job (a singleton) reads its run’s own context through the proxy', async () => {
    const [run] = await jobRuns.wait('job');
    expect(run!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(run!.serviceId).toBe(run!.id);
    expect(run!.source).toBe('schedule');
    expect(run!.instance).toBe(true);
  });

  it('outside any context: instanceof holds, every use throws the actionable ContextNotActiveError', () => {
    const proxy = app.get(ProxyContext);
    expect(proxy).toBeInstanceOf(ProxyContext);
    expect(Object.getPrototypeOf(proxy)).toBe(ProxyContext.prototype);
    expect(() => proxy.correlationId).toThrow(ContextNotActiveError);
    expect(() => proxy.correlationId).toThrow(/the injected ProxyContext: no context is active here.*contextService\.run/);
    expect(() => {
      proxy.userId = 'x';
    }).toThrow(ContextNotActiveError);
    expect(() => 'userId' in proxy).toThrow(ContextNotActiveError);
    expect(() => Object.keys(proxy)).toThrow(ContextNotActiveError);
    expect(() => proxy.describe()).toThrow(ContextNotActiveError); // the method runs, its first field read throws
    expect(() => proxy.short).toThrow(ContextNotActiveError);
    // Names Nest probes on every provider at bootstrap read as absent rather than throwing.
    expect((proxy as unknown as { then?: unknown }).then).toBeUndefined();
    expect((proxy as unknown as { onModuleInit?: unknown }).onModuleInit).toBeUndefined();
  });

  it('inside contextService.run() the proxy resolves to that context, and writes land on the object ContextService returns', () => {
    const proxy = app.get(ProxyContext);
    const service = app.get<ContextService<ProxyContext>>(ContextService);
    service.run(
      () => {
        expect(proxy.correlationId).toBe('manual-run');
        proxy.userId = 'manual';
        expect(service.get().userId).toBe('manual');
        expect(proxy.describe()).toBe('manual@manual-run');
        expect(delete proxy.userId).toBe(true);
        expect(service.get().userId).toBeUndefined();
        expect(proxy).not.toBe(service.get()); // the proxy stands for the object; identity comes from get()
      },
      { correlationId: 'manual-run' },
    );
  });
});

/** A gateway must be a singleton: with the proxy, it can inject the class. */
@WebSocketGateway()
class ProxyGateway {
  constructor(
    private readonly ctx: ProxyContext,
    private readonly context: ContextService<ProxyContext>,
  ) {
    built.gateway++;
  }
  @SubscribeMessage('who')
  async who(@MessageBody() body: { wait: number }): Promise<{ id: string; service: string; source: string; afterAwait: string }> {
    const id = this.ctx.correlationId;
    await sleep(body.wait);
    return { id, service: this.context.get().correlationId, source: this.ctx.source, afterAwait: this.ctx.correlationId };
  }
}

describe("injection: 'proxy' in a WebSocket gateway", () => {
  let app: INestApplication;
  const sockets: ClientSocket[] = [];
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await app?.close();
  });

  it('the gateway is built once and every message reads its own context', async () => {
    built.gateway = 0;
    @Module({
      imports: [ContextModule.forRoot(ProxyContext, { injection: 'proxy' }), ContextWsModule.forRoot()],
      providers: [ProxyGateway],
    })
    class GatewayModule {}
    const moduleRef = await Test.createTestingModule({ imports: [GatewayModule] }).compile();
    app = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
    app.useWebSocketAdapter(new IoAdapter(app));
    await app.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${(app.getHttpServer() as { address(): { port: number } }).address().port}`;
    for (let i = 0; i < 3; i++) {
      const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false });
      sockets.push(socket);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      });
    }
    const answers = (await Promise.all(
      Array.from({ length: 60 }, (_, n) => sockets[n % 3]!.timeout(10000).emitWithAck('who', { wait: (n * 7) % 11 })),
    )) as { id: string; service: string; source: string; afterAwait: string }[];
    expect(answers.filter((a) => a.service !== a.id || a.afterAwait !== a.id || a.source !== 'ws')).toEqual([]);
    expect(new Set(answers.map((a) => a.id)).size).toBe(60);
    expect(built.gateway).toBe(1);
  });
});

describe("injection: 'proxy' with forRootAsync, two apps, and the option's checks", () => {
  @Controller()
  class IdController {
    constructor(private readonly ctx: ProxyContext) {}
    @Get('id')
    async id(): Promise<{ id: string; instance: boolean }> {
      await sleep(jitter());
      return { id: this.ctx.correlationId, instance: this.ctx instanceof ProxyContext };
    }
  }

  const asyncOptions: ContextModuleAsyncOptions<ProxyContext> = {
    injection: 'proxy',
    useFactory: async (): Promise<ContextModuleOptions<ProxyContext>> => ({ correlationId: { responseHeader: 'x-async-id' } }),
  };

  @Module({ imports: [ContextModule.forRootAsync(ProxyContext, asyncOptions)], controllers: [IdController] })
  class AsyncModule {}

  it.each(platforms)('forRootAsync provides the proxy too (%s)', async (_name, makeAdapter) => {
    const app = await bootApp(AsyncModule, makeAdapter);
    try {
      const controller = app.get(IdController); // a singleton: resolvable with app.get()
      const responses = await Promise.all(
        Array.from({ length: 40 }, (_, i) => request(app.getHttpServer()).get('/id').set('x-request-id', `async-${i}`)),
      );
      responses.forEach((res, i) => {
        expect(res.status).toBe(200);
        expect(res.body).toEqual({ id: `async-${i}`, instance: true });
        expect(res.headers['x-async-id']).toBe(`async-${i}`);
      });
      expect(app.get(IdController)).toBe(controller);
    } finally {
      await app.close();
    }
  });

  it.each(platforms)('two apps in one process, from one module definition: each proxy resolves to its own app’s context (%s)', async (_name, makeAdapter) => {
    @Module({ imports: [ContextModule.forRoot(ProxyContext, { injection: 'proxy' })], controllers: [IdController] })
    class SharedModule {}
    const a = await bootApp(SharedModule, makeAdapter);
    const b = await bootApp(SharedModule, makeAdapter);
    try {
      const proxyA = a.get(ProxyContext);
      const proxyB = b.get(ProxyContext);
      expect(proxyA).not.toBe(proxyB);
      const [fromA, fromB] = await Promise.all([
        Promise.all(Array.from({ length: 30 }, (_, i) => request(a.getHttpServer()).get('/id').set('x-request-id', `a-${i}`))),
        Promise.all(Array.from({ length: 30 }, (_, i) => request(b.getHttpServer()).get('/id').set('x-request-id', `b-${i}`))),
      ]);
      fromA.forEach((res, i) => expect(res.body).toEqual({ id: `a-${i}`, instance: true }));
      fromB.forEach((res, i) => expect(res.body).toEqual({ id: `b-${i}`, instance: true }));
      // A proxy of one app used inside a context of the other: the same error ContextService gives.
      a.get<ContextService<ProxyContext>>(ContextService).run(
        () => {
          expect(proxyA.correlationId).toBe('in-a');
          expect(() => proxyB.correlationId).toThrow(
            /the injected ProxyContext: the active context is a ProxyContext made by another app in this process, and this injected ProxyContext belongs to/,
          );
          expect(() => b.get<ContextService<ProxyContext>>(ContextService).get()).not.toThrow(); // same class: ContextService accepts it
        },
        { correlationId: 'in-a' },
      );
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("the default stays 'request' (request-scoped), and a wrong value fails at declaration with the accepted ones", async () => {
    @Module({ imports: [ContextModule.forRoot(ProxyContext)], controllers: [IdController] })
    class DefaultModule {}
    const app = await bootApp(DefaultModule, platforms[0][1]);
    try {
      expect(() => app.get(IdController)).toThrow(/scoped/); // request scope bubbled up to the controller
      const res = await request(app.getHttpServer()).get('/id').set('x-request-id', 'scoped-1').expect(200);
      expect(res.body).toEqual({ id: 'scoped-1', instance: true });
    } finally {
      await app.close();
    }
    const wrong = { injection: 'singleton' } as unknown as ContextModuleStaticOptions;
    expect(() => ContextModule.forRoot(ProxyContext, wrong)).toThrow(ContextConfigError);
    expect(() => ContextModule.forRoot(ProxyContext, wrong)).toThrow(/option injection of forRoot\(\) must be 'request' or 'proxy', got string "singleton"/);
    expect(() => ContextModule.forRootAsync(ProxyContext, { ...wrong, useFactory: () => ({}) })).toThrow(/option injection of forRootAsync\(\)/);
  });
});
