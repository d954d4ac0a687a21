import 'reflect-metadata';
import { Controller, Get, Inject, Injectable, Module, Scope, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import {
  ContextConfigError,
  ContextCreationError,
  ContextModule,
  ContextNotActiveError,
  ContextService,
  Ctx,
  currentContext,
} from '../src/index.js';
import { activeContext } from './utils/internals.js';
import { MyContext } from './fixtures/app-context.js';
import { bootApp, platforms } from './utils/platforms.js';

describe('outside any context', () => {
  it('currentContext throws an error that says how to fix it', () => {
    expect(() => currentContext.correlationId).toThrow(ContextNotActiveError);
    expect(() => currentContext.correlationId).toThrow(/currentContext: no context is active here.*contextService\.run\(\(\) => \.\.\.\)/s);
    expect(() => {
      (currentContext as unknown as Record<string, unknown>).x = 1;
    }).toThrow(ContextNotActiveError);
  });

  it('ContextService.get throws; getOrUndefined, correlationId and active do not', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [ContextModule.forRoot(MyContext)] }).compile();
    const service = moduleRef.get<ContextService<MyContext>>(ContextService);
    expect(() => service.get()).toThrow(/ContextService\.get\(\): no context is active here/);
    expect(service.getOrUndefined()).toBeUndefined();
    expect(service.correlationId).toBeUndefined();
    expect(service.active).toBe(false);
    await moduleRef.close();
  });
});

describe('bootstrap fails with a clear message on a wrong forRoot argument', () => {
  it.each([
    ['no class', () => ContextModule.forRoot(undefined as never), /forRoot\(\) needs your context class as its first argument, got undefined/],
    ['a string', () => ContextModule.forRoot('MyContext' as never), /got string "MyContext".*ContextModule\.forRoot\(MyContext, options\?\)/s],
    ['an instance', () => ContextModule.forRoot({} as never), /got an object/],
    ['forRootAsync without a class', () => ContextModule.forRootAsync(null as never, { useFactory: () => ({}) }), /forRootAsync\(\) needs your context class/],
    ['forRootAsync without a factory', () => ContextModule.forRootAsync(MyContext, {}), /forRootAsync\(\) needs one of useFactory, useClass or useExisting/],
  ])('%s', (_label, call, message) => {
    expect(call).toThrow(ContextConfigError);
    expect(call).toThrow(message);
  });

  it.each([
    ['requestHeaders not an array', { correlationId: { requestHeaders: 'x-id' } }, /correlationId\.requestHeaders must be an array/],
    ['a bad header name', { correlationId: { requestHeaders: ['x id'] } }, /correlationId\.requestHeaders\[0\] must be an HTTP header name/],
    ['a bad response header', { correlationId: { responseHeader: 'x:y' } }, /correlationId\.responseHeader must be an HTTP header name/],
    ['validate not a function', { correlationId: { validate: /x/ } }, /correlationId\.validate must be a function/],
    ['factory not a function', { factory: 'x' }, /option factory must be a function/],
    ['trustInbound not usable', { trustInbound: 'yes' }, /option trustInbound must be true, false or a function/],
  ])('%s (forRoot and forRootAsync)', async (_label, options, message) => {
    await expect(Test.createTestingModule({ imports: [ContextModule.forRoot(MyContext, options as never)] }).compile()).rejects.toThrow(message);
    await expect(
      Test.createTestingModule({ imports: [ContextModule.forRootAsync(MyContext, { useFactory: async () => options as never })] }).compile(),
    ).rejects.toThrow(message);
  });
});

class FailingContext {
  static mode: 'throw' | 'promise' | 'ok' = 'throw';
  correlationId?: string;
  constructor() {
    if (FailingContext.mode === 'throw') throw new Error('context constructor exploded');
    if (FailingContext.mode === 'promise') return Promise.resolve({}) as never;
  }
}

@Injectable({ scope: Scope.REQUEST })
class NeedsContext {
  constructor(readonly ctx: FailingContext) {}
}

@Controller('fail')
class FailingController {
  @Get('decorator') viaDecorator(@Ctx() ctx: FailingContext) {
    return { ok: ctx instanceof FailingContext };
  }
  @Get('static') viaStatic() {
    return { id: currentContext.correlationId };
  }
}

@Controller('fail-injected')
class FailingInjectedController {
  constructor(@Inject(NeedsContext) private readonly needs: NeedsContext) {}
  @Get() get() {
    return { ok: this.needs.ctx instanceof FailingContext };
  }
}

@Module({ imports: [ContextModule.forRoot(FailingContext)], controllers: [FailingController, FailingInjectedController], providers: [NeedsContext] })
class FailingModule {}

describe.each(platforms)('a context constructor that fails gives a normal 500 with the id header (%s)', (_name, makeAdapter) => {
  let app: INestApplication;
  beforeAll(async () => {
    app = await bootApp(FailingModule, makeAdapter);
  });
  afterAll(async () => {
    await app.close();
  });

  it.each([
    ['throw', '/fail/decorator'],
    ['throw', '/fail/static'],
    ['throw', '/fail-injected'],
    ['promise', '/fail/decorator'],
  ] as const)('constructor %s, reached through %s', async (mode, path) => {
    FailingContext.mode = mode;
    const res = await request(app.getHttpServer()).get(path).set('x-request-id', `f-${mode}`);
    expect(res.status).toBe(500);
    expect(res.headers['x-request-id']).toBe(`f-${mode}`);
    FailingContext.mode = 'ok';
    const after = await request(app.getHttpServer()).get('/fail/decorator').set('x-request-id', 'after');
    expect(after.status).toBe(200);
    expect(after.body).toEqual({ ok: true });
  });

  it('a factory that returns a promise is reported as ContextCreationError', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [ContextModule.forRoot(FailingContext)] }).compile();
    const service = moduleRef.get<ContextService<FailingContext>>(ContextService);
    FailingContext.mode = 'promise';
    expect(() => service.run(() => service.get())).toThrow(ContextCreationError);
    expect(() => service.run(() => service.get())).toThrow(/must be synchronous/);
    FailingContext.mode = 'throw';
    expect(() => service.run(() => service.get())).toThrow('context constructor exploded');
    FailingContext.mode = 'ok';
    await moduleRef.close();
  });
});

describe('a failed build is remembered for the request', () => {
  it('the constructor runs once even when read twice', async () => {
    let calls = 0;
    class Once {
      constructor() {
        calls++;
        throw new Error('nope');
      }
    }
    const moduleRef = await Test.createTestingModule({ imports: [ContextModule.forRoot(Once)] }).compile();
    const service = moduleRef.get<ContextService<Once>>(ContextService);
    service.run(() => {
      expect(() => service.get()).toThrow('nope');
      expect(() => service.get()).toThrow('nope');
    });
    expect(calls).toBe(1);
    await moduleRef.close();
  });

  it('a context that reads itself while being built gets a clear error, not a stack overflow', async () => {
    class Reentrant {
      constructor() {
        void activeContext();
      }
    }
    const moduleRef = await Test.createTestingModule({ imports: [ContextModule.forRoot(Reentrant)] }).compile();
    const service = moduleRef.get<ContextService<Reentrant>>(ContextService);
    expect(() => service.run(() => service.get())).toThrow(/read the context while it was being created/);
    await moduleRef.close();
  });
});
