/**
 * `nestjs-context/schedule`: every `@Cron()`, `@Interval()` and `@Timeout()` run gets a fresh context.
 * For `@nestjs/schedule`.
 *
 * @module nestjs-context/schedule
 */
import { Inject, Injectable, Module, Optional, type DynamicModule } from '@nestjs/common';
import { DiscoveryModule, DiscoveryService } from '@nestjs/core';
import { ContextHost } from '../../runtime/context-host.js';
import { storage } from '../../record/context-record.js';
import { AppBindings, MethodExplorer, type AnyMethod, type AppBinding, type WrapperMaker } from '../../runtime/method-explorer.js';
import { hostOrThrow } from '../../runtime/apps.js';
import { markInternal } from '../../runtime/internal.js';

/** The `ContextInit.source` of contexts opened for scheduled runs. */
const SCHEDULE_CONTEXT_SOURCE = 'schedule';

/** The metadata key `@Cron()`, `@Interval()` and `@Timeout()` of `@nestjs/schedule` (10–12) put on a method. */
const SCHEDULER_TYPE = 'SCHEDULER_TYPE';
const TAG = Symbol.for('nestjs-context:schedule');

/** Classes with scheduled methods (and their instances) → the apps that imported this integration. */
const bindings = new AppBindings<AppBinding>();

function hasScheduleMetadata(fn: unknown): boolean {
  const reflect = Reflect as unknown as { getMetadata?(key: string, target: object): unknown };
  return typeof fn === 'function' && reflect.getMetadata?.(SCHEDULER_TYPE, fn) !== undefined;
}

/**
 * Finds the methods of the app's providers and controllers that carry `@Cron()`, `@Interval()` or
 * `@Timeout()` and wraps them while the app is being built — before `@nestjs/schedule` reads them at
 * `onModuleInit` — so that every run opens a fresh context. @internal
 */
@Injectable()
class ContextScheduleExplorer extends MethodExplorer<AppBinding> {
  constructor(discovery: DiscoveryService, @Optional() @Inject(ContextHost) host: ContextHost | undefined) {
    super(discovery, bindings, { host: hostOrThrow(host, 'ContextScheduleModule') }, TAG);
    this.scan();
  }

  protected wrapperOf(_key: string, method: AnyMethod): WrapperMaker | undefined {
    return hasScheduleMetadata(method) ? wrapScheduled : undefined;
  }
}

/** A scheduled method, run in a fresh context of the app its object belongs to. */
function wrapScheduled(original: AnyMethod): AnyMethod {
  return function (this: unknown, ...args: unknown[]) {
    // Only objects of an app that imported this integration get a context from it.
    const host = bindings.of(this)?.host;
    if (host === undefined || host.closed) return original.apply(this, args);
    return storage.run(host.create({ source: SCHEDULE_CONTEXT_SOURCE }), () => original.apply(this, args));
  };
}

/**
 * Gives every run of a `@Cron()`, `@Interval()` or `@Timeout()` method a fresh context (fresh
 * correlation id, new trace, `source: 'schedule'`) — zero per-method code. Import it once, beside
 * `ContextModule` and `ScheduleModule`. Jobs added at runtime through `SchedulerRegistry` are not
 * seen; decorate their callbacks with `@WithContext()` or wrap them in `contextService.run()`.
 *
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext), ScheduleModule.forRoot(), ContextScheduleModule.forRoot()] })
 */
@Module({})
export class ContextScheduleModule {
  /** Registers the integration (global). */
  static forRoot(): DynamicModule {
    return { module: ContextScheduleModule, global: true, imports: [DiscoveryModule], providers: [ContextScheduleExplorer] };
  }
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextScheduleExplorer, ContextScheduleModule);
