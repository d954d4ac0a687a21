import 'reflect-metadata';
import { Controller, Get, Injectable, Module, type INestApplication } from '@nestjs/common';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { Test } from '@nestjs/testing';
import { ExpressAdapter } from '@nestjs/platform-express';
import request from 'supertest';
import { ContextModule, ContextService, currentContext } from 'nestjs-context';
import { activeContext as getCurrentContext } from '../utils/internals.js';
import { ContextEventEmitterModule, ListenerContext } from 'nestjs-context/event-emitter';
import { MyContext } from '../fixtures/app-context.js';
import { Log, sleep } from './log.js';

interface Heard {
  key: string;
  listener: string;
  id: string | undefined;
  current: string;
  object: MyContext;
  traceId: string | undefined;
  afterAwait?: string | undefined;
}

const heard = new Log<Heard>();

@Injectable()
class Listeners {
  constructor(private readonly context: ContextService<MyContext>) {}

  private note(listener: string, key: string, extra: Partial<Heard> = {}): void {
    heard.push({
      key: `${listener}:${key}`,
      listener,
      id: this.context.correlationId,
      current: currentContext.correlationId as string,
      object: getCurrentContext() as unknown as MyContext,
      traceId: this.context.trace?.traceId,
      ...extra,
    });
  }

  @OnEvent('order.placed')
  sync(key: string): void {
    this.note('sync', key);
  }

  @OnEvent('order.placed')
  async asyncBody(key: string): Promise<void> {
    await sleep(5);
    this.note('asyncBody', key);
  }

  @OnEvent('order.placed', { async: true })
  asyncOption(key: string): void {
    this.note('asyncOption', key);
  }

  @OnEvent('order.placed', { async: true, nextTick: true })
  async nextTick(key: string): Promise<void> {
    const before = this.context.correlationId;
    await sleep(3);
    this.note('nextTick', key, { afterAwait: before });
  }

  @OnEvent('order.placed', { promisify: true })
  promisified(key: string): void {
    this.note('promisify', key);
  }

  @ListenerContext('fresh')
  @OnEvent('order.placed')
  fresh(key: string): void {
    this.note('fresh', key);
  }
}

@Controller()
class Emitter {
  constructor(
    private readonly events: EventEmitter2,
    private readonly context: ContextService<MyContext>,
  ) {}

  @Get('emit')
  emit(): { id: string | undefined; traceId: string | undefined } {
    this.context.get().userId = 'from-http';
    this.events.emit('order.placed', `http-${this.context.correlationId}`);
    return { id: this.context.correlationId, traceId: this.context.trace?.traceId };
  }
}

@Module({
  imports: [ContextModule.forRoot(MyContext), EventEmitterModule.forRoot(), ContextEventEmitterModule.forRoot()],
  controllers: [Emitter],
  providers: [Listeners],
})
class AppModule {}

const INHERITING = ['sync', 'asyncBody', 'asyncOption', 'nextTick', 'promisify'];

describe('@nestjs/event-emitter: listeners inherit the emitter context', () => {
  let app: INestApplication;
  let events: EventEmitter2;
  let service: ContextService<MyContext>;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
    await app.init();
    events = app.get(EventEmitter2);
    service = app.get(ContextService);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('sync, async and { async: true } listeners see the emitting request context (same object)', async () => {
    const res = await request(app.getHttpServer()).get('/emit').set('x-request-id', 'evt-1').expect(200);
    const key = 'http-evt-1';
    for (const listener of INHERITING) {
      const [h] = await heard.wait(`${listener}:${key}`);
      expect({ listener, id: h!.id, current: h!.current }).toEqual({ listener, id: 'evt-1', current: 'evt-1' });
      expect(h!.traceId).toBe(res.body.traceId);
      expect(h!.object.userId).toBe('from-http');
    }
    const [n] = await heard.wait(`nextTick:${key}`);
    expect(n!.afterAwait).toBe('evt-1');
  });

  it('@ListenerContext("fresh") gives a listener a new context per call', async () => {
    await request(app.getHttpServer()).get('/emit').set('x-request-id', 'evt-2').expect(200);
    await request(app.getHttpServer()).get('/emit').set('x-request-id', 'evt-3').expect(200);
    const [a] = await heard.wait('fresh:http-evt-2');
    const [b] = await heard.wait('fresh:http-evt-3');
    expect(a!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(a!.id).not.toBe(b!.id);
    expect(a!.object.userId).toBeUndefined();
  });

  it('many overlapping emits: each listener call sees its own emitter', async () => {
    const n = 100;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        service.run(async () => {
          await sleep(i % 5);
          events.emit('order.placed', `many-${i}`);
        }, { correlationId: `many-${i}` }),
      ),
    );
    for (let i = 0; i < n; i++) {
      for (const listener of INHERITING) {
        const [h] = await heard.wait(`${listener}:many-${i}`);
        expect(h!.id).toBe(`many-${i}`);
      }
    }
  });

  it('an event emitted outside any context gives each listener call a fresh context', async () => {
    events.emit('order.placed', 'outside');
    const seen = await Promise.all(INHERITING.map(async (l) => (await heard.wait(`${l}:outside`))[0]!));
    for (const h of seen) expect(h.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(service.active).toBe(false);
  });
});

const freshHeard = new Log<{ key: string; id: string | undefined }>();

@Injectable()
class FreshListeners {
  constructor(private readonly context: ContextService<MyContext>) {}

  @OnEvent('ping', { async: true })
  onPing(key: string): void {
    freshHeard.push({ key, id: this.context.correlationId });
  }

  @ListenerContext('inherit')
  @OnEvent('ping')
  inherits(key: string): void {
    freshHeard.push({ key: `inherit:${key}`, id: this.context.correlationId });
  }
}

describe('@nestjs/event-emitter: mode "fresh" for the whole app', () => {
  it('every listener call gets a fresh context unless the listener says inherit', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [ContextModule.forRoot(MyContext), EventEmitterModule.forRoot(), ContextEventEmitterModule.forRoot({ mode: 'fresh' })],
      providers: [FreshListeners],
    }).compile();
    const app = await moduleRef.init();
    try {
      const service = app.get<ContextService<MyContext>>(ContextService);
      service.run(() => app.get(EventEmitter2).emit('ping', 'p1'), { correlationId: 'emitter-1' });
      const [h] = await freshHeard.wait('p1');
      expect(h!.id).toMatch(/^[0-9a-f-]{36}$/);
      const [i] = await freshHeard.wait('inherit:p1');
      expect(i!.id).toBe('emitter-1');
    } finally {
      await app.close();
    }
  });

  it('rejects an unknown mode with a message saying what to pass', async () => {
    const compile = Test.createTestingModule({
      imports: [ContextModule.forRoot(MyContext), ContextEventEmitterModule.forRoot({ mode: 'sometimes' as never })],
    }).compile();
    await expect(compile).rejects.toThrow(/mode must be 'inherit' or 'fresh', got "sometimes"/);
    expect(() => ListenerContext('x' as never)).toThrow(/mode must be 'inherit' or 'fresh'/);
  });
});

const valueHeard = new Log<{ key: string; id: string | undefined }>();
let valueService: ContextService<MyContext> | undefined;

/** Not `@Injectable()`: registered as `useValue` / `useFactory`, so Nest only knows its instances. */
class ValueListener {
  constructor(private readonly name: string) {}

  @OnEvent('value.ping')
  onPing(key: string): void {
    valueHeard.push({ key: `${this.name}:${key}`, id: valueService?.correlationId });
  }
}

class FactoryListener extends ValueListener {}

describe('@nestjs/event-emitter: useValue and useFactory listeners', () => {
  it('are wrapped like class providers: fresh context outside any context, the emitter context inside one', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [ContextModule.forRoot(MyContext), EventEmitterModule.forRoot(), ContextEventEmitterModule.forRoot()],
      providers: [
        { provide: 'VALUE_LISTENER', useValue: new ValueListener('value') },
        { provide: 'FACTORY_LISTENER', useFactory: () => new FactoryListener('factory') },
      ],
    }).compile();
    const app = await moduleRef.init();
    try {
      valueService = app.get<ContextService<MyContext>>(ContextService);
      const events = app.get(EventEmitter2);
      events.emit('value.ping', 'outside');
      for (const name of ['value', 'factory']) {
        const [h] = await valueHeard.wait(`${name}:outside`);
        expect({ name, id: h!.id }).toEqual({ name, id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
      }
      valueService.run(() => events.emit('value.ping', 'inside'), { correlationId: 'value-emitter' });
      for (const name of ['value', 'factory']) {
        const [h] = await valueHeard.wait(`${name}:inside`);
        expect({ name, id: h!.id }).toEqual({ name, id: 'value-emitter' });
      }
    } finally {
      valueService = undefined;
      await app.close();
    }
  });
});

const sharedHeard = new Log<{ key: string; id: string | undefined }>();

@Injectable()
class SharedListener {
  constructor(private readonly context: ContextService<MyContext>) {}

  @OnEvent('shared.ping')
  onPing(key: string): void {
    sharedHeard.push({ key, id: this.context.correlationId });
  }
}

describe('@nestjs/event-emitter: two apps sharing a listener class', () => {
  it("each app's listener keeps its own mode, also after the other app closes", async () => {
    const build = async (mode: 'inherit' | 'fresh') => {
      const moduleRef = await Test.createTestingModule({
        imports: [ContextModule.forRoot(MyContext), EventEmitterModule.forRoot(), ContextEventEmitterModule.forRoot({ mode })],
        providers: [SharedListener],
      }).compile();
      return moduleRef.init();
    };
    const a = await build('fresh');
    const b = await build('inherit');
    let bOpen = true;
    try {
      const emitIn = (app: typeof a, key: string) =>
        app.get<ContextService<MyContext>>(ContextService).run(() => app.get(EventEmitter2).emit('shared.ping', key), { correlationId: `emitter-${key}` });
      emitIn(a, 'a1');
      emitIn(b, 'b1');
      expect((await sharedHeard.wait('a1'))[0]!.id).toMatch(/^[0-9a-f-]{36}$/);
      expect((await sharedHeard.wait('b1'))[0]!.id).toBe('emitter-b1');
      await b.close();
      bOpen = false;
      emitIn(a, 'a2');
      expect((await sharedHeard.wait('a2'))[0]!.id).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      if (bOpen) await b.close();
      await a.close();
    }
  });
});
