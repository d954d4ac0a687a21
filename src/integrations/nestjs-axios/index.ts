/**
 * `nestjs-context/nestjs-axios`: `HttpModule` of `@nestjs/axios` whose `HttpService` carries the
 * current context. Peer dependencies: `@nestjs/axios`, `axios`.
 *
 * @module nestjs-context/nestjs-axios
 */
import { Inject, Injectable, Module, type DynamicModule, type OnModuleInit } from '@nestjs/common';
import { HttpModule, HttpService, type HttpModuleAsyncOptions, type HttpModuleOptions } from '@nestjs/axios';
import type { OutboundOptions } from '../../access/current-context.js';
import { propagateContext } from '../axios/index.js';
import { markInternal } from '../../runtime/internal.js';

const OUTBOUND_OPTIONS = Symbol.for('nestjs-context:nestjs-axios-options');

/** Attaches propagation to the module's `HttpService` once it exists. @internal */
@Injectable()
class HttpServicePropagation implements OnModuleInit {
  constructor(
    private readonly http: HttpService,
    @Inject(OUTBOUND_OPTIONS) private readonly options: OutboundOptions,
  ) {}

  onModuleInit(): void {
    propagateContext(this.http.axiosRef, this.options);
  }
}

/**
 * `HttpModule` of `@nestjs/axios` whose `HttpService` carries the current context on every request:
 * import it where you would import `HttpModule` (same `register`/`registerAsync` options).
 *
 * @example
 * \@Module({ imports: [ContextHttpModule.register({ timeout: 5000 })] })
 */
@Module({})
export class ContextHttpModule {
  /** Like `HttpModule.register(config)`, with context propagation. */
  static register(config: HttpModuleOptions = {}, options: OutboundOptions = {}): DynamicModule {
    return ContextHttpModule.wrap(HttpModule.register(config), options);
  }

  /** Like `HttpModule.registerAsync(config)`, with context propagation. */
  static registerAsync(config: HttpModuleAsyncOptions, options: OutboundOptions = {}): DynamicModule {
    return ContextHttpModule.wrap(HttpModule.registerAsync(config), options);
  }

  private static wrap(http: DynamicModule, options: OutboundOptions): DynamicModule {
    return {
      module: ContextHttpModule,
      imports: [http],
      providers: [{ provide: OUTBOUND_OPTIONS, useValue: options }, HttpServicePropagation],
      exports: [http],
    };
  }
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(HttpServicePropagation, ContextHttpModule);
