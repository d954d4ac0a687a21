import {
  Module,
  type DynamicModule,
  type MiddlewareConsumer,
  type NestModule,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type OnModuleInit,
  type Type,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, HttpAdapterHost } from '@nestjs/core';
import { bindInstance, registerApp, trackBootstrapping, unbindInstance } from '../runtime/apps.js';
import { CONTEXT_MODULE_OPTIONS } from '../constants.js';
import { ContextHost } from '../runtime/context-host.js';
import { mountContext } from '../entry/http-entry.js';
import { mountErrorBody } from '../entry/client-headers.js';
import { checkContextClass, checkInjection } from '../runtime/options.js';
import { createAsyncOptionsProviders, createContextProviders } from './context.providers.js';
import { ContextService } from '../access/context.service.js';
import type {
  ContextModuleAsyncOptions,
  ContextModuleOptions,
  ContextModuleStaticOptions,
} from '../interfaces/context-module-options.interface.js';
import { markInternal } from '../runtime/internal.js';

/**
 * Gives every request a context object of your class, reachable through `@Ctx()`, `ContextService`,
 * `currentContext` and constructor injection of the class itself.
 *
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext)] })
 * export class AppModule {}
 */
@Module({})
export class ContextModule implements NestModule, OnModuleInit, OnApplicationBootstrap, OnApplicationShutdown {
  /** Stops tracking the app as bootstrapping. */
  private readonly untrack: () => void;
  private bound: Set<object> | undefined;

  /** Built by Nest. @internal */
  constructor(
    private readonly host: ContextHost,
    private readonly adapterHost: HttpAdapterHost,
    private readonly discovery: DiscoveryService,
  ) {
    this.untrack = trackBootstrapping(this);
  }

  /**
   * Binds the objects this app built (providers and controllers) to it, so code on them outside
   * dependency injection (`@WithContext()`) opens contexts of this app; unbound on `app.close()`.
   */
  onModuleInit(): void {
    this.bindOwn();
  }

  /**
   * This app's host if it built `instance`: asked while the app bootstraps, when a provider of a
   * module whose hooks run before this one's (a deeper module) calls `@WithContext()` code. @internal
   */
  claim(instance: object): ContextHost | undefined {
    if (this.host.closed) return undefined;
    return (this.bound?.has(instance) ?? false) || this.bindOwn().has(instance) ? this.host : undefined;
  }

  /** Binds every object this app built that is not bound yet (providers may still be appearing during bootstrap). */
  private bindOwn(): Set<object> {
    const host = this.host;
    let bound = this.bound;
    if (bound === undefined) {
      const own = (bound = this.bound = new Set<object>());
      host.onClose(() => {
        for (const instance of own) unbindInstance(instance, host);
      });
    }
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      // Only objects the app built itself (class providers and controllers): a `useValue` or factory
      // product may be shared with other apps.
      if (!wrapper.isDependencyTreeStatic() || typeof wrapper.metatype !== 'function' || wrapper.inject) continue;
      const instance = wrapper.instance as unknown;
      if (instance === null || typeof instance !== 'object' || bound.has(instance)) continue;
      bound.add(instance);
      bindInstance(instance, host);
    }
    return bound;
  }

  /** Counts the app as alive once its bootstrap has completed (a module only compiled never is). */
  onApplicationBootstrap(): void {
    this.untrack();
    this.host.onClose(registerApp(this.host));
  }

  /**
   * Tears down everything this app installed — the HTTP entry, integration wrappers, bindings — in
   * the last phase of `app.close()`, after every module's `onModuleDestroy` and
   * `beforeApplicationShutdown`, so that cron runs, listeners and workers stopping there still get
   * their context.
   */
  onApplicationShutdown(): void {
    this.untrack();
    this.host.close();
  }

  /**
   * Registers the module with your context class and options.
   * @param contextClass any class; it is built per request with a `ContextInit` argument.
   * @param options see `ContextModuleOptions`; `isGlobal`, `interceptor` and `injection` are module-level switches.
   */
  static forRoot<T extends object>(
    contextClass: Type<T>,
    options: ContextModuleOptions<T> & ContextModuleStaticOptions = {},
  ): DynamicModule {
    checkContextClass(contextClass, 'forRoot');
    return {
      module: ContextModule,
      global: options?.isGlobal ?? true,
      imports: [DiscoveryModule],
      providers: [
        { provide: CONTEXT_MODULE_OPTIONS, useValue: options ?? {} },
        ...createContextProviders(contextClass, options?.interceptor ?? true, checkInjection(options?.injection, 'forRoot')),
      ],
      exports: [ContextService, ContextHost, contextClass],
    };
  }

  /**
   * Registers the module with options from a factory, class or existing provider (e.g. built from
   * `ConfigService`). `isGlobal`, `interceptor` and `injection` are given here, beside the factory.
   */
  static forRootAsync<T extends object>(contextClass: Type<T>, options: ContextModuleAsyncOptions<T>): DynamicModule {
    checkContextClass(contextClass, 'forRootAsync');
    return {
      module: ContextModule,
      global: options?.isGlobal ?? true,
      imports: [DiscoveryModule, ...(options?.imports ?? [])],
      providers: [
        ...createAsyncOptionsProviders(options ?? {}),
        ...createContextProviders(contextClass, options?.interceptor ?? true, checkInjection(options?.injection, 'forRootAsync')),
      ],
      exports: [ContextService, ContextHost, contextClass],
    };
  }

  /** Enters the context of every HTTP request before the framework sees it (called by Nest during `app.init()`). */
  configure(_consumer: MiddlewareConsumer): void {
    if (this.host.options.enterEarly) {
      this.host.onClose(mountContext(this.adapterHost?.httpAdapter, this.host.enterHttp, this.host.options, this.host.answersFailures));
    }
    // correlationId.errorBody: the id in the JSON body of Nest's error responses.
    const errorBodyField = this.host.options.errorBodyField;
    if (errorBodyField !== undefined) this.host.onClose(mountErrorBody(this.adapterHost?.httpAdapter, this.host.options, errorBodyField));
  }
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextModule);
