import 'reflect-metadata';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Controller, Get, Injectable, Module, type INestApplication, type OnModuleInit } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
// @ts-expect-error express ships no types and @types/express is not installed
import express from 'express';
import request from 'supertest';
import { ContextModule, ContextService, WithContext, currentContext, type ContextInit } from 'nestjs-context';
import { ContextHost } from '../../src/runtime/context-host.js';
import { liveApps } from '../../src/runtime/apps.js';
import { parseBaggageOnce } from '../../src/propagation/baggage.js';
import { bootApp, platforms } from '../utils/platforms.js';

class ContextA {
  readonly app = 'A';
  readonly correlationId: string;
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

class ContextB {
  readonly app = 'B';
  readonly correlationId: string;
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

@Injectable()
class JobA {
  constructor(readonly context: ContextService<ContextA>) {}
  @WithContext()
  run(): { app: string; klass: string } {
    const ctx = this.context.get();
    return { app: ctx.app, klass: ctx.constructor.name };
  }
}

@Injectable()
class JobB {
  @WithContext()
  run(): string {
    return (currentContext as unknown as ContextB).app;
  }
}

@Module({ imports: [ContextModule.forRoot(ContextA)], providers: [JobA] })
class AppA {}

@Module({ imports: [ContextModule.forRoot(ContextB)], providers: [JobB] })
class AppB {}

/** A context with one declared baggage field, read by GET /tenant. */
class BaggageContext {
  tenant?: string;
}

@Controller()
class TenantController {
  constructor(private readonly context: ContextService<BaggageContext>) {}
  @Get('tenant')
  tenant(): string {
    return this.context.get().tenant ?? 'none';
  }
}

@Module({ imports: [ContextModule.forRoot(BaggageContext, { baggage: { fields: ['tenant'] } })], controllers: [TenantController] })
class BaggageApp {}

/** An object no app built. */
class Loose {
  @WithContext()
  run(): string {
    return (currentContext as unknown as { app: string }).app;
  }
}

afterEach(() => {
  expect(liveApps()).toHaveLength(0); // every test closes what it opened
});

describe('@WithContext() and ContextService belong to their app', () => {
  it('a method of app A runs with A\'s context class after app B was created (and B\'s with B\'s)', async () => {
    const a = await NestFactory.createApplicationContext(AppA, { logger: false });
    const b = await NestFactory.createApplicationContext(AppB, { logger: false });
    try {
      expect(a.get(JobA).run()).toEqual({ app: 'A', klass: 'ContextA' });
      expect(b.get(JobB).run()).toBe('B');
    } finally {
      await b.close();
      await a.close();
    }
  });

  it('ContextService<ContextA>.get() never hands out a ContextB: called inside B\'s context it says why', async () => {
    const a = await NestFactory.createApplicationContext(AppA, { logger: false });
    const b = await NestFactory.createApplicationContext(AppB, { logger: false });
    try {
      const serviceA = a.get(ContextService) as ContextService<ContextA>;
      b.get(ContextService).run(() => {
        expect(() => serviceA.get()).toThrow(/the active context is a ContextB made by another app.*ContextA/);
        expect(serviceA.getOrUndefined()).toBeUndefined();
        expect(serviceA.correlationId).toBeDefined(); // the id is the request's, whatever the class
      });
      serviceA.run(() => expect(serviceA.get()).toBeInstanceOf(ContextA));
    } finally {
      await b.close();
      await a.close();
    }
  });

  it('an object no app built: the app of the active context, else the only app, else a clear error', async () => {
    const loose = new Loose();
    expect(() => loose.run()).toThrow(/no app with ContextModule is running/);
    const a = await NestFactory.createApplicationContext(AppA, { logger: false });
    expect(loose.run()).toBe('A'); // the only app
    const b = await NestFactory.createApplicationContext(AppB, { logger: false });
    try {
      expect(() => loose.run()).toThrow(/2 apps with ContextModule are running.*app\.get\(ContextService\)\.run/);
      expect(b.get(ContextService).run(() => loose.run())).toBe('B'); // the active context's app
      expect(a.get(ContextService).run(() => loose.run())).toBe('A');
    } finally {
      await b.close();
      await a.close();
    }
  });

  it('a method of a closed app says its app was closed', async () => {
    const a = await NestFactory.createApplicationContext(AppA, { logger: false });
    const job = a.get(JobA);
    await a.close();
    expect(() => job.run()).toThrow(/the app this object belongs to was closed/);
  });
});

describe('objects of an app that is still bootstrapping', () => {
  it('a provider of a deep module calls its @WithContext() method from onModuleInit (isGlobal: false)', async () => {
    const seen: string[] = [];
    @Injectable()
    class Seeder implements OnModuleInit {
      @WithContext()
      seed(): string {
        return (currentContext as unknown as ContextA).app;
      }
      onModuleInit(): void {
        seen.push(this.seed());
      }
    }
    @Module({ providers: [Seeder] })
    class Sub {}
    @Module({ imports: [Sub] })
    class Feature {}
    @Module({ imports: [ContextModule.forRoot(ContextA, { isGlobal: false }), Feature] })
    class Root {}
    const other = await NestFactory.createApplicationContext(AppB, { logger: false }); // another app running
    try {
      const app = await NestFactory.createApplicationContext(Root, { logger: false });
      expect(seen).toEqual(['A']);
      await app.close();
    } finally {
      await other.close();
    }
  });
});

describe('only apps that finished their bootstrap count, until they close', () => {
  it('a module that was only compiled leaves nothing registered', async () => {
    const compiled = await Test.createTestingModule({ imports: [AppB] }).compile(); // never initialised, never closed
    expect(liveApps()).toHaveLength(0);
    expect(() => new Loose().run()).toThrow(/no app with ContextModule is running/);
    const a = await NestFactory.createApplicationContext(AppA, { logger: false });
    try {
      expect(new Loose().run()).toBe('A'); // not the compiled B
    } finally {
      await a.close();
    }
    expect(compiled).toBeDefined();
  });

  it('an app whose bootstrap threw leaves nothing registered', async () => {
    @Injectable()
    class Failing implements OnModuleInit {
      onModuleInit(): void {
        throw new Error('bootstrap failed');
      }
    }
    @Module({ imports: [ContextModule.forRoot(ContextB)], providers: [Failing] })
    class FailingApp {}
    await expect(NestFactory.createApplicationContext(FailingApp, { logger: false, abortOnError: false })).rejects.toThrow('bootstrap failed');
    expect(liveApps()).toHaveLength(0);
  });
});

@Controller()
class WhoController {
  constructor(private readonly context: ContextService<ContextA | ContextB>) {}
  @Get('who') who() {
    return { app: this.context.get().app, id: this.context.correlationId };
  }
}

@Module({ imports: [ContextModule.forRoot(ContextA)], controllers: [WhoController] })
class OuterApp {}

@Module({ imports: [ContextModule.forRoot(ContextB)], controllers: [WhoController] })
class InnerApp {}

describe('a Nest app mounted inside another (Express)', () => {
  it('the inner app gets its own record and its own response header; the outer app keeps its own', async () => {
    const inner = await NestFactory.create(InnerApp, new ExpressAdapter(express()), { logger: false });
    await inner.init();
    const outer = await NestFactory.create(OuterApp, new ExpressAdapter(express()), { logger: false });
    outer.use('/v2', inner.getHttpAdapter().getInstance());
    await outer.init();
    try {
      const http = request(outer.getHttpServer());
      const innerRes = await http.get('/v2/who');
      expect(innerRes.body.app).toBe('B');
      expect(innerRes.headers['x-request-id']).toBe(innerRes.body.id);
      const outerRes = await http.get('/who');
      expect(outerRes.body.app).toBe('A');
      expect(outerRes.headers['x-request-id']).toBe(outerRes.body.id);
      const given = await http.get('/v2/who').set('x-request-id', 'given-1');
      expect(given.body).toEqual({ app: 'B', id: 'given-1' });
    } finally {
      await outer.close();
      await inner.close();
    }
  });
});

describe.each(platforms)('closing takes the entry off completely (%s)', (name, makeAdapter) => {
  it('the adapter is back to what it was before the app, after 50 apps created and closed', async () => {
    for (let i = 0; i < 50; i++) {
      // Express: the app's own `handle` before Nest and the module saw it (comparing with the test's
      // `express.application.handle` would assume one copy of express: with NestJS 11 the adapter
      // can load a copy of its own).
      const adapter = makeAdapter();
      const instance = adapter.getInstance() as { handle?: unknown };
      const original = instance.handle;
      const app: INestApplication = await bootApp(OuterApp, () => adapter);
      const server = app.getHttpServer() as import('node:http').Server;
      const res = await request(server).get('/who');
      expect(res.status).toBe(200);
      if (name === 'express') expect(instance.handle).not.toBe(original); // the entry is mounted while the app runs
      await app.close();
      if (name === 'express') {
        expect(typeof original).toBe('function');
        expect(instance.handle).toBe(original);
      } else {
        const listeners = server.listeners('request');
        expect(listeners).toHaveLength(1);
        expect(listeners[0]?.name).not.toBe('nestjsContextEntry');
      }
    }
    expect(liveApps()).toHaveLength(0);
  });
});

describe('nothing of a closed app stays reachable', () => {
  it.each(platforms)("on %s, the baggage header of the app's last request is forgotten once the app closes", async (_name, makeAdapter) => {
    const app = await bootApp(BaggageApp, makeAdapter);
    const header = 'tenant=closing-app';
    const res = await request(app.getHttpServer()).get('/tenant').set('baggage', header);
    expect(res.text).toBe('closing-app');
    const remembered = parseBaggageOnce(header);
    expect(parseBaggageOnce(header)).toBe(remembered); // the list the request's record read
    await app.close();
    const after = parseBaggageOnce(header);
    expect(after).not.toBe(remembered);
    expect(after).toEqual(remembered);
  });


  it('50 apps created and closed: every ContextHost is garbage-collected', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // Counted with a FinalizationRegistry: WeakRef.deref() would keep its target alive for the job.
    const collected = new Set<number>();
    const registry = new FinalizationRegistry<number>((i) => collected.add(i));
    // Each app lives only inside this function, so no stack frame of the test keeps one.
    const cycle = async (i: number): Promise<void> => {
      const app = await bootApp(OuterApp, i % 2 === 0 ? () => new ExpressAdapter() : () => new FastifyAdapter());
      await request(app.getHttpServer()).get('/who');
      registry.register(app.get(ContextHost), i);
      await app.close();
    };
    for (let i = 0; i < 50; i++) await cycle(i);
    // Sockets and timers of the last requests close asynchronously: a few rounds of waiting and collecting.
    for (let round = 0; round < 40 && collected.size < 50; round++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      gc();
    }
    expect(Array.from({ length: 50 }, (_, i) => i).filter((i) => !collected.has(i))).toEqual([]);
  });
});
