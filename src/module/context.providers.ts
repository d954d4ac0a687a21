import { Scope, type Provider, type Type } from '@nestjs/common';
import { APP_INTERCEPTOR, REQUEST } from '@nestjs/core';
import { CONTEXT_CLASS, CONTEXT_INTERCEPTOR_ON, CONTEXT_MODULE_OPTIONS } from '../constants.js';
import { ContextHost } from '../runtime/context-host.js';
import { ContextInterceptor } from '../entry/context.interceptor.js';
import { ContextService } from '../access/context.service.js';
import { createContextProxy } from '../access/context-proxy.js';
import type {
  ContextInjection,
  ContextModuleAsyncOptions,
  ContextModuleOptions,
  ContextOptionsFactory,
} from '../interfaces/context-module-options.interface.js';
import { ContextConfigError } from '../errors.js';

/** Providers shared by `forRoot` and `forRootAsync`. @internal */
export function createContextProviders<T extends object>(
  contextClass: Type<T>,
  interceptor: boolean,
  injection: ContextInjection,
): Provider[] {
  const providers: Provider[] = [
    { provide: CONTEXT_CLASS, useValue: contextClass },
    { provide: CONTEXT_INTERCEPTOR_ON, useValue: interceptor },
    ContextHost,
    ContextService,
    // Constructor injection of the user's class. The host is a dependency (not a value shared
    // through the module definition), so two apps built from one module definition each use their own.
    injection === 'proxy'
      ? {
          // A singleton standing for the current context of this app (no scope bubbling).
          provide: contextClass,
          inject: [ContextHost],
          useFactory: (host: ContextHost<T>): T => createContextProxy(host),
        }
      : {
          // Request-scoped, and the same object as every other access path because it is taken from
          // the request's record.
          provide: contextClass,
          scope: Scope.REQUEST,
          inject: [REQUEST, ContextHost],
          useFactory: (request: unknown, host: ContextHost<T>): T => host.forInjectedRequest(request).context,
        },
  ];
  if (interceptor) providers.push({ provide: APP_INTERCEPTOR, useClass: ContextInterceptor });
  return providers;
}

/** The options provider(s) of `forRootAsync`. @internal */
export function createAsyncOptionsProviders<T extends object>(options: ContextModuleAsyncOptions<T>): Provider[] {
  if (options.useFactory) {
    return [{ provide: CONTEXT_MODULE_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] }];
  }
  const factoryClass = options.useClass ?? options.useExisting;
  if (!factoryClass) {
    throw ContextConfigError.create(
      'forRootAsync() needs one of useFactory, useClass or useExisting',
      'Pass e.g. { useFactory: (config: ConfigService) => ({ ... }), inject: [ConfigService] }.',
    );
  }
  const fromFactory: Provider = {
    provide: CONTEXT_MODULE_OPTIONS,
    useFactory: (factory: ContextOptionsFactory<T>): ContextModuleOptions<T> | Promise<ContextModuleOptions<T>> =>
      factory.createContextOptions(),
    inject: [factoryClass],
  };
  return options.useClass ? [fromFactory, { provide: options.useClass, useClass: options.useClass }] : [fromFactory];
}
