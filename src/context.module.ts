import { Module, type DynamicModule, type MiddlewareConsumer, type NestModule, type OnModuleDestroy, type Type } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { CONTEXT_MODULE_OPTIONS } from './context.constants.js';
import { ContextHost } from './context.host.js';
import { mountContext, type Unmount } from './context.mount.js';
import { checkContextClass } from './context.options.js';
import { createAsyncOptionsProviders, createContextProviders } from './context.providers.js';
import { ContextService } from './context.service.js';
import { registerHost } from './with-context.decorator.js';
import type {
  ContextModuleAsyncOptions,
  ContextModuleOptions,
  ContextModuleStaticOptions,
} from './interfaces/context-module-options.interface.js';

/**
 * Gives every request a context object of your class, reachable through `@Ctx()`, `ContextService`,
 * `currentContext` and constructor injection of the class itself.
 *
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext)] })
 * export class AppModule {}
 */
@Module({})
export class ContextModule implements NestModule, OnModuleDestroy {
  /** Forgets this app's host in the registry `@WithContext()` reads. */
  private readonly unregister: () => void;
  /** Takes the HTTP entry off the adapter again. */
  private unmount: Unmount = () => undefined;

  constructor(
    private readonly host: ContextHost,
    private readonly adapterHost: HttpAdapterHost,
  ) {
    this.unregister = registerHost(host);
  }

  /** Takes the HTTP entry off and removes the app from the registry `@WithContext()` reads (called by Nest on `app.close()`). */
  onModuleDestroy(): void {
    this.unmount();
    this.unregister();
  }

  /**
   * Registers the module with your context class and options.
   * @param contextClass any class; it is built per request with a `ContextInit` argument.
   * @param options see `ContextModuleOptions`; `isGlobal` and `interceptor` are module-level switches.
   */
  static forRoot<T extends object>(
    contextClass: Type<T>,
    options: ContextModuleOptions<T> & ContextModuleStaticOptions = {},
  ): DynamicModule {
    checkContextClass(contextClass, 'forRoot');
    return {
      module: ContextModule,
      global: options?.isGlobal ?? true,
      providers: [
        { provide: CONTEXT_MODULE_OPTIONS, useValue: options ?? {} },
        ...createContextProviders(contextClass, options?.interceptor ?? true),
      ],
      exports: [ContextService, ContextHost, contextClass],
    };
  }

  /**
   * Registers the module with options from a factory, class or existing provider (e.g. built from
   * `ConfigService`). `isGlobal` and `interceptor` are given here, beside the factory.
   */
  static forRootAsync<T extends object>(contextClass: Type<T>, options: ContextModuleAsyncOptions<T>): DynamicModule {
    checkContextClass(contextClass, 'forRootAsync');
    return {
      module: ContextModule,
      global: options?.isGlobal ?? true,
      imports: options?.imports ?? [],
      providers: [
        ...createAsyncOptionsProviders(options ?? {}),
        ...createContextProviders(contextClass, options?.interceptor ?? true),
      ],
      exports: [ContextService, ContextHost, contextClass],
    };
  }

  /** Enters the context of every HTTP request before the framework sees it (called by Nest during `app.init()`). */
  configure(_consumer: MiddlewareConsumer): void {
    if (this.host.options.middleware) this.unmount = mountContext(this.adapterHost?.httpAdapter, this.host.enterHttp, this.host.options, this.host.answersFailures);
  }
}
