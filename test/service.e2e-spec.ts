import 'reflect-metadata';
import { Controller, Get, Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { defer, delay, lastValueFrom, map, of } from 'rxjs';
import {
  ContextError,
  ContextModule,
  ContextService,
  currentContext,
  type ContextModuleOptions,
  type ContextOptionsFactory,
} from '../src/index.js';
import { MyContext } from './fixtures/app-context.js';
import { activeContext } from './utils/internals.js';
import { bootApp, platforms } from './utils/platforms.js';

async function serviceFor(imports: unknown[]) {
  const moduleRef = await Test.createTestingModule({ imports: imports as never[] }).compile();
  return { moduleRef, service: moduleRef.get<ContextService<MyContext>>(ContextService) };
}

describe('ContextService.run', () => {
  it('opens a fresh context with a fresh id and the user class', async () => {
    const { moduleRef, service } = await serviceFor([ContextModule.forRoot(MyContext)]);
    const seen = service.run(() => ({ ctx: service.get(), id: service.correlationId, current: activeContext() }));
    expect(seen.ctx).toBeInstanceOf(MyContext);
    expect(seen.ctx.correlationId).toBe(seen.id);
    expect(seen.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.current).toBe(seen.ctx);
    expect(service.getOrUndefined()).toBeUndefined();
    await moduleRef.close();
  });

  it('uses a given correlation id, and rejects one the validator refuses', async () => {
    const { moduleRef, service } = await serviceFor([ContextModule.forRoot(MyContext)]);
    expect(service.run(() => currentContext.correlationId, { correlationId: 'job-17' })).toBe('job-17');
    expect(() => service.run(() => 1, { correlationId: 'not valid!' })).toThrow(ContextError);
    expect(() => service.run(() => 1, { correlationId: 'not valid!' })).toThrow(/correlationId "not valid!" is not valid/);
    await moduleRef.close();
  });

  it('uses a given context object and fills its undefined correlation id', async () => {
    const { moduleRef, service } = await serviceFor([ContextModule.forRoot(MyContext)]);
    const given = Object.create(MyContext.prototype) as MyContext;
    const seen = service.run(() => service.get(), { context: given, correlationId: 'given-1' });
    expect(seen).toBe(given);
    expect(given.correlationId).toBe('given-1');
    await moduleRef.close();
  });

  it('nests: the inner context is new, the outer one is back afterwards, promises stay inside', async () => {
    const { moduleRef, service } = await serviceFor([ContextModule.forRoot(MyContext)]);
    await service.run(async () => {
      const outer = service.get();
      const inner = await service.run(async () => {
        await new Promise((resolve) => setTimeout(resolve, 2));
        return service.get();
      });
      expect(inner).not.toBe(outer);
      await new Promise((resolve) => setTimeout(resolve, 2));
      expect(service.get()).toBe(outer);
    });
    await moduleRef.close();
  });

  it('an Observable it returns runs inside its context when subscribed later, outside any context', async () => {
    const { moduleRef, service } = await serviceFor([ContextModule.forRoot(MyContext)]);
    const stream = service.run(() => defer(() => of(service.correlationId)).pipe(delay(1), map((id) => [id, service.get().correlationId])), {
      correlationId: 'run-observable',
    });
    expect(service.correlationId).toBeUndefined();
    await expect(lastValueFrom(stream)).resolves.toEqual(['run-observable', 'run-observable']);
    await expect(lastValueFrom(stream)).resolves.toEqual(['run-observable', 'run-observable']);
    await moduleRef.close();
  });

  it('concurrent runs stay apart', async () => {
    const { moduleRef, service } = await serviceFor([ContextModule.forRoot(MyContext)]);
    const ids = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        service.run(
          async () => {
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
            return service.correlationId === `run-${i}` && service.get().correlationId === `run-${i}`;
          },
          { correlationId: `run-${i}` },
        ),
      ),
    );
    expect(ids.every(Boolean)).toBe(true);
    await moduleRef.close();
  });
});

describe('currentContext stands for the active object', () => {
  it('reads, writes, methods, `in`, keys, instanceof and JSON act on the real context', async () => {
    class Rich {
      correlationId!: string;
      #secret = 'hidden';
      count = 0;
      bump(): number {
        return ++this.count;
      }
      secret(): string {
        return this.#secret;
      }
    }
    const moduleRef = await Test.createTestingModule({ imports: [ContextModule.forRoot(Rich)] }).compile();
    const service = moduleRef.get<ContextService<Rich>>(ContextService);
    service.run(
      () => {
        const proxy = currentContext as unknown as Rich;
        expect(proxy.bump()).toBe(1);
        expect(proxy.secret()).toBe('hidden');
        proxy.count = 10;
        expect(service.get().count).toBe(10);
        expect('count' in proxy).toBe(true);
        expect(Object.keys(proxy).sort()).toEqual(['correlationId', 'count']);
        expect(proxy instanceof Rich).toBe(true);
        expect(JSON.parse(JSON.stringify(proxy))).toEqual({ correlationId: 'rich-1', count: 10 });
      },
      { correlationId: 'rich-1' },
    );
    await moduleRef.close();
  });
});

@Injectable()
class ConfigLike {
  readonly header = 'x-tenant-request';
}
@Module({ providers: [ConfigLike], exports: [ConfigLike] })
class ConfigLikeModule {}

@Injectable()
class OptionsFactory implements ContextOptionsFactory<MyContext> {
  createContextOptions(): ContextModuleOptions<MyContext> {
    return { correlationId: { requestHeaders: ['x-from-class'] } };
  }
}

@Controller()
class IdController {
  @Get('id') id() {
    return { id: currentContext.correlationId };
  }
}

describe.each(platforms)('forRootAsync (%s)', (_name, makeAdapter) => {
  it.each([
    [
      'useFactory + inject + imports',
      ContextModule.forRootAsync(MyContext, {
        imports: [ConfigLikeModule],
        inject: [ConfigLike],
        useFactory: async (config: ConfigLike) => ({ correlationId: { requestHeaders: [config.header] } }),
      }),
      'x-tenant-request',
    ],
    ['useClass', ContextModule.forRootAsync(MyContext, { useClass: OptionsFactory }), 'x-from-class'],
  ])('%s', async (_label, contextModule, header) => {
    @Module({ imports: [contextModule], controllers: [IdController] })
    class AsyncModule {}
    const app = await bootApp(AsyncModule, makeAdapter);
    const res = await request(app.getHttpServer()).get('/id').set(header, 'async-1');
    expect(res.body).toEqual({ id: 'async-1' });
    expect(res.headers['x-request-id']).toBe('async-1');
    await app.close();
  });
});
