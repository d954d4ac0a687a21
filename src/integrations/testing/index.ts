/**
 * `nestjs-context/testing`: unit tests of your own providers with a context of your choosing, without
 * an HTTP server. `ContextTestingModule.forRoot(MyContext)` in `Test.createTestingModule()`, then
 * `moduleRef.get(ContextTester).runWith(context | init, fn)`: inside `fn`, `ContextService`,
 * `currentContext`, `@WithContext()` code and request-scoped providers resolved there (the injected
 * `MyContext` and whatever injects it) all see that context.
 *
 * @module nestjs-context/testing
 */
import { Injectable, Module, type DynamicModule, type Type } from '@nestjs/common';
import { ContextModule } from '../../module/context.module.js';
import { ContextHost } from '../../runtime/context-host.js';
import { runInRecord, type ContextRecord } from '../../record/context-record.js';
import { ContextError } from '../../errors.js';
import { ownCorrelationId } from '../../runtime/options.js';
import type { RegisteredContext } from '../../access/current-context.js';
import type { ContextSource } from '../../interfaces/context-init.interface.js';
import type { ContextModuleOptions, ContextModuleStaticOptions } from '../../interfaces/context-module-options.interface.js';

/**
 * How {@link ContextTester.runWith} opens the context, when you do not hand it the context object
 * itself. Every field is optional: `{}` opens a fresh context, as a request without headers would.
 */
export interface TestContextInit<T extends object = RegisteredContext> {
  /** The context object to use (for one your `factory` builds that is not an instance of the class). */
  context?: T;
  /**
   * The correlation id, checked with the module's validator. Default: the `correlationId` field of
   * `context` (the `correlationIdField` option) when it holds a valid id, else the first valid id of
   * `headers`, else a fresh one from the module's generator.
   */
  correlationId?: string;
  /**
   * Inbound headers, as a request or message would carry them (`x-request-id`, `traceparent`,
   * `tracestate`, `baggage`): the id, trace and baggage are read from them, trusted. Names are
   * case-insensitive.
   */
  headers?: Readonly<Record<string, string>>;
  /** The `ContextInit.source` your class receives. Default: `'manual'`. */
  source?: ContextSource;
}

/**
 * Opens contexts of its app's class in tests. Provided by {@link ContextTestingModule} (or add it to
 * the providers of a testing module that imports `ContextModule`); get it with `moduleRef.get(ContextTester)`.
 * @typeParam T your context class; defaults to the one registered through `ContextRegistry`.
 */
@Injectable()
export class ContextTester<T extends object = RegisteredContext> {
  private readonly host: ContextHost<T>;

  /** Built by Nest. @internal */
  constructor(host: ContextHost) {
    this.host = host as unknown as ContextHost<T>;
  }

  /**
   * Runs `fn` inside a context and returns its result (a promise or Observable stays inside the
   * context until it settles): the context object you pass (an instance of your class), or one made
   * from a {@link TestContextInit}. The correlation id agrees with the object's `correlationId` field.
   *
   * @example
   * await tester.runWith({ correlationId: 'test-1' }, () => orders.place({ item: 'book' }));
   * @throws ContextError when a given correlation id does not pass the module's validator.
   */
  runWith<R>(contextOrInit: T | TestContextInit<T>, fn: () => R): R {
    const init: TestContextInit<T> = contextOrInit instanceof this.host.contextClass ? { context: contextOrInit as T } : (contextOrInit as TestContextInit<T>);
    return runInRecord(this.record(init ?? {}), fn);
  }

  /** The record `init` describes (the one `runWith` runs in). */
  private record(init: TestContextInit<T>): ContextRecord<T> {
    const o = this.host.options;
    const source = init.source ?? 'manual';
    if (init.correlationId !== undefined && !o.validate(init.correlationId)) {
      throw new ContextError(
        `ContextTester.runWith(): correlationId ${JSON.stringify(String(init.correlationId).slice(0, 40))} is not valid for ` +
          `this app's validator. Pass an id that passes correlationId.validate, or leave it out to get one.`,
      );
    }
    const correlationId = init.correlationId ?? ownCorrelationId(o, init.context);
    const { context, headers } = init;
    // Headers a test gives are trusted: they stand for what the test means the caller to have sent.
    return headers === undefined
      ? this.host.create({ correlationId, context, source })
      : this.host.continueFrom(headers, { correlationId, context, source, trusted: true });
  }
}

/**
 * `ContextModule` for `Test.createTestingModule()`, plus a {@link ContextTester}. Compiling the
 * testing module is enough: no app, no HTTP server, no `init()`.
 *
 * @example
 * const moduleRef = await Test.createTestingModule({
 *   imports: [ContextTestingModule.forRoot(MyContext)],
 *   providers: [OrdersService],
 * }).compile();
 */
@Module({})
export class ContextTestingModule {
  /**
   * `ContextModule.forRoot(contextClass, options)` (global), with {@link ContextTester} provided
   * and exported beside it.
   */
  static forRoot<T extends object>(contextClass: Type<T>, options: ContextModuleOptions<T> & ContextModuleStaticOptions = {}): DynamicModule {
    return {
      module: ContextTestingModule,
      global: options?.isGlobal ?? true,
      imports: [ContextModule.forRoot(contextClass, options)],
      providers: [ContextTester],
      exports: [ContextModule, ContextTester],
    };
  }
}
