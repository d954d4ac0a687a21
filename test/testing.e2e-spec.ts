import 'reflect-metadata';
import { Injectable, type LoggerService } from '@nestjs/common';
import { ContextIdFactory } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import { lastValueFrom, of, delay, map } from 'rxjs';
import { ContextError, ContextService, currentContext } from '../src/index.js';
import { ContextTester, ContextTestingModule } from '../src/integrations/testing/index.js';
import { MyContext } from './fixtures/app-context.js';

/**
 * `nestjs-context/testing` beyond the recipes of docs/testing.md (test/docs/testing/ runs those):
 * inbound headers, ids that agree with a given object, a factory's plain object, Observables, and
 * what Nest's testing users do with request-scoped providers.
 */

@Injectable()
class Reader {
  constructor(private readonly context: ContextService<MyContext>) {}
  read() {
    return { ctx: this.context.get(), id: this.context.correlationId, trace: this.context.trace, baggage: this.context.baggage };
  }
}

@Injectable()
class Injected {
  constructor(readonly context: MyContext) {}
}

class WarnLogger implements LoggerService {
  readonly warnings: string[] = [];
  log(): void {}
  error(): void {}
  warn(message: unknown): void {
    this.warnings.push(String(message));
  }
}

describe('ContextTester', () => {
  let moduleRef: TestingModule;
  let tester: ContextTester<MyContext>;
  const logger = new WarnLogger();

  beforeAll(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [ContextTestingModule.forRoot(MyContext, { baggage: { fields: ['userId'] } })],
      providers: [Reader, Injected],
    }).compile();
    moduleRef.useLogger(logger);
    tester = moduleRef.get(ContextTester);
  });
  afterEach(() => {
    logger.warnings.length = 0;
  });

  it('an instance of the class is used as it is, under the id it holds', () => {
    const context = new MyContext({ correlationId: 'own-1', source: 'manual' });
    const seen = tester.runWith(context, () => moduleRef.get(Reader).read());
    expect(seen.ctx).toBe(context);
    expect(seen.id).toBe('own-1');
    expect(logger.warnings).toEqual([]);
  });

  it('a context whose own id is not valid keeps its object, gets a fresh id, and is warned about', () => {
    const context = new MyContext({ correlationId: 'not valid!', source: 'manual' });
    const seen = tester.runWith(context, () => moduleRef.get(Reader).read());
    expect(seen.ctx).toBe(context);
    expect(seen.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(logger.warnings.join('\n')).toMatch(/MyContext\.correlationId holds string "not valid!"/);
  });

  it('inbound headers: the id, the trace and the baggage are read from them', () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const seen = tester.runWith({ headers: { 'X-Request-Id': 'hdr-1', traceparent, baggage: 'userId=u-5' } }, () => moduleRef.get(Reader).read());
    expect(seen.id).toBe('hdr-1');
    expect(seen.ctx.correlationId).toBe('hdr-1');
    expect(seen.trace).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', sampled: true, remote: true });
    expect(seen.baggage).toEqual([{ key: 'userId', value: 'u-5' }]);
    expect(seen.ctx.userId).toBe('u-5');
  });

  it('an explicit correlationId wins over headers; an invalid one throws and says why', () => {
    expect(tester.runWith({ correlationId: 'mine', headers: { 'x-request-id': 'theirs' } }, () => currentContext.correlationId)).toBe('mine');
    expect(() => tester.runWith({ correlationId: 'bad id' }, () => 1)).toThrow(ContextError);
    expect(() => tester.runWith({ correlationId: 'bad id' }, () => 1)).toThrow(/ContextTester.runWith\(\): correlationId "bad id" is not valid/);
  });

  it('{ context } takes an object that is not an instance of the class (a factory product)', () => {
    const plain = { correlationId: 'plain-1', userId: 'p' } as MyContext;
    const seen = tester.runWith({ context: plain, source: 'bullmq' }, () => moduleRef.get(Reader).read());
    expect(seen.ctx).toBe(plain);
    expect(seen.id).toBe('plain-1');
  });

  it('promises and Observables stay in the context', async () => {
    await expect(tester.runWith({ correlationId: 'p-1' }, async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return currentContext.correlationId;
    })).resolves.toBe('p-1');
    const observed = tester.runWith({ correlationId: 'o-1' }, () => of(1).pipe(delay(1), map(() => currentContext.correlationId)));
    await expect(lastValueFrom(observed)).resolves.toBe('o-1');
  });

  it('the injected class resolved inside runWith is the same object ContextService returns', async () => {
    await tester.runWith({ correlationId: 'inj-1' }, async () => {
      const injected = await moduleRef.resolve(Injected, ContextIdFactory.create());
      expect(injected.context).toBe(moduleRef.get(Reader).read().ctx);
      expect(injected.context.correlationId).toBe('inj-1');
    });
  });

  it('a request registered for a context id (what Nest testing users do) gives the injected class its id', async () => {
    const contextId = ContextIdFactory.create();
    moduleRef.registerRequestByContextId({ headers: { 'x-request-id': 'registered-1' } }, contextId);
    const injected = await moduleRef.resolve(Injected, contextId);
    expect(injected.context.correlationId).toBe('registered-1');
  });

  it('ContextService.run({ context }) also opens the context under the id the object holds, over one in headers', () => {
    const context = new MyContext({ correlationId: 'run-own-1', source: 'manual' });
    expect(moduleRef.get(ContextService).run(() => currentContext.correlationId, { context })).toBe('run-own-1');
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const seen = moduleRef.get(ContextService).run(() => moduleRef.get(Reader).read(), { context, headers: { 'x-request-id': 'theirs', traceparent } });
    expect(seen.id).toBe('run-own-1');
    expect(seen.ctx).toBe(context);
    expect(seen.trace?.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    const tested = tester.runWith({ context, headers: { 'x-request-id': 'theirs', traceparent } }, () => moduleRef.get(Reader).read());
    expect(tested.id).toBe('run-own-1');
    expect(tested.trace?.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(logger.warnings).toEqual([]);
  });
});
