import 'reflect-metadata';
import { Injectable, Module, SetMetadata } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ContextError, ContextModule, ContextService, WithContext, currentContext } from 'nestjs-context';
import { activeContext as getCurrentContext } from '../utils/internals.js';
import { MyContext } from '../fixtures/app-context.js';
import { sleep } from './log.js';
import { defer, delay, lastValueFrom, map, of, type Observable } from 'rxjs';

/** A plain class, never seen by DI: the decorator needs no injection. */
class Script {
  @WithContext()
  syncRun(): string {
    return currentContext.correlationId as string;
  }

  @WithContext()
  async asyncRun(): Promise<{ before: string; after: string; object: unknown }> {
    const before = currentContext.correlationId as string;
    const object = getCurrentContext();
    await sleep(5);
    return { before, after: currentContext.correlationId as string, object: getCurrentContext() === object ? 'same' : 'different' };
  }

  @WithContext()
  stream(): Observable<string[]> {
    const opened = currentContext.correlationId as string;
    return defer(() => of(opened)).pipe(delay(1), map((id) => [id, currentContext.correlationId as string]));
  }

  @WithContext({ inherit: true })
  inheriting(): string {
    return currentContext.correlationId as string;
  }

  @WithContext({ source: 'cli' })
  source(): string {
    return (getCurrentContext() as unknown as { source: string }).source;
  }

  @WithContext()
  throws(): never {
    throw new Error('boom inside');
  }

  @WithContext()
  @SetMetadata('role', 'kept')
  decorated(): void {}
}

class SourceContext extends MyContext {
  readonly source: string;
  constructor(init: ConstructorParameters<typeof MyContext>[0]) {
    super(init);
    this.source = init.source;
  }
}

@Injectable()
class ReportService {
  constructor(private readonly context: ContextService<SourceContext>) {}

  @WithContext()
  async generate(): Promise<string | undefined> {
    await sleep(1);
    return this.context.get().correlationId;
  }
}

@Module({ imports: [ContextModule.forRoot(SourceContext)], providers: [ReportService] })
class StandaloneModule {}

describe('@WithContext()', () => {
  it('without any ContextModule: a clear error saying how to fix it', () => {
    expect(() => new Script().syncRun()).toThrow(ContextError);
    expect(() => new Script().syncRun()).toThrow(
      /@WithContext\(\) on Script\.syncRun: no app with ContextModule is running in this process.*ContextModule\.forRoot\(MyContext\).*createApplicationContext/,
    );
  });

  it('rejects a non-method at decoration time', () => {
    const decorate = () => WithContext()({}, 'field', { value: 42 } as TypedPropertyDescriptor<unknown>);
    expect(decorate).toThrow(/decorates methods only/);
  });

  describe('on a standalone app (NestFactory.createApplicationContext)', () => {
    let app: Awaited<ReturnType<typeof NestFactory.createApplicationContext>>;
    beforeAll(async () => {
      app = await NestFactory.createApplicationContext(StandaloneModule, { logger: false });
    });
    afterAll(async () => {
      await app?.close();
    });

    it('sync methods: a fresh context per call, nothing active afterwards', () => {
      const script = new Script();
      const a = script.syncRun();
      const b = script.syncRun();
      expect(a).toMatch(/^[0-9a-f-]{36}$/);
      expect(a).not.toBe(b);
      expect(app.get(ContextService).active).toBe(false);
    });

    it('async methods keep their context across awaits; concurrent calls do not mix', async () => {
      const results = await Promise.all(Array.from({ length: 50 }, () => new Script().asyncRun()));
      for (const r of results) {
        expect(r.after).toBe(r.before);
        expect(r.object).toBe('same');
      }
      expect(new Set(results.map((r) => r.before)).size).toBe(50);
    });

    it('a returned Observable runs inside the call\'s context when subscribed later, outside any context', async () => {
      const stream = new Script().stream();
      expect(app.get(ContextService).active).toBe(false);
      const [opened, seen] = await lastValueFrom(stream);
      expect(opened).toMatch(/^[0-9a-f-]{36}$/);
      expect(seen).toBe(opened);
    });

    it('works on DI providers too, with the app context class', async () => {
      const id = await app.get(ReportService).generate();
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(new Script().source()).toBe('cli');
    });

    it('inherit: true reuses an active context, opens one otherwise; the default always opens a new one', () => {
      const service = app.get<ContextService<SourceContext>>(ContextService);
      const script = new Script();
      expect(service.run(() => script.inheriting(), { correlationId: 'outer-1' })).toBe('outer-1');
      expect(script.inheriting()).toMatch(/^[0-9a-f-]{36}$/);
      expect(service.run(() => script.syncRun(), { correlationId: 'outer-2' })).not.toBe('outer-2');
    });

    it('errors pass through unchanged; metadata of other decorators is kept', () => {
      expect(() => new Script().throws()).toThrow('boom inside');
      expect(Reflect.getMetadata('role', Script.prototype.decorated)).toBe('kept');
    });
  });

  it('after the app closes, the error comes back', async () => {
    const app = await NestFactory.createApplicationContext(StandaloneModule, { logger: false });
    expect(new Script().syncRun()).toMatch(/^[0-9a-f-]{36}$/);
    await app.close();
    expect(() => new Script().syncRun()).toThrow(/no app with ContextModule is running/);
  });
});
