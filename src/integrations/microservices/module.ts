import { Inject, Injectable, Module, Optional, type DynamicModule, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ContextConfigError } from '../../context.errors.js';
import { ContextHost } from '../../context.host.js';
import { extractCarrier } from './carrier.js';
import { registerHost } from './hosts.js';
import { checkForceEnvelope } from './client.js';
import { installMicroservicesPropagation, type ContextMicroservicesOptions } from './install.js';

/** Injection token of the options given to `ContextMicroservicesModule.forRoot()`. @internal */
export const CONTEXT_MICROSERVICES_OPTIONS = Symbol.for('nestjs-context:microservices-options');

const TRACE_HEADERS = ['traceparent', 'tracestate', 'baggage'];

/** Registers the `'rpc'` extractor on the app's `ContextHost` and installs propagation. @internal */
@Injectable()
export class MicroservicesPropagation implements OnModuleInit, OnApplicationShutdown {
  private uninstall: (() => void) | undefined;
  private readonly installing: Promise<() => void>;
  private readonly unregister: () => void;

  constructor(
    @Optional() host?: ContextHost,
    @Optional() @Inject(CONTEXT_MICROSERVICES_OPTIONS) options?: ContextMicroservicesOptions,
  ) {
    if (host === undefined) {
      throw ContextConfigError.create(
        'ContextMicroservicesModule found no ContextModule in this app',
        'Import ContextModule.forRoot(MyContext) in the root module (it is global by default; with isGlobal: false, ' +
          'import ContextMicroservicesModule in the same module).',
      );
    }
    const forceEnvelope = checkForceEnvelope(options, 'ContextMicroservicesModule.forRoot()');
    const idHeaders = host.options.requestHeaders.map((name) => name.toLowerCase());
    const names = [...new Set([...TRACE_HEADERS, ...idHeaders])];
    // Correlation id headers keep every candidate in priority order (the first valid one wins);
    // trace headers keep the first usable value (W3C: one value each).
    const ids = new Set(idHeaders.filter((name) => !TRACE_HEADERS.includes(name)));
    host.setExtractor('rpc', (data, transport) => extractCarrier(data, transport, names, ids));
    this.unregister = registerHost(host);
    // Patch now, before Nest registers the message handlers (that happens after instantiation).
    this.installing = installMicroservicesPropagation({ forceEnvelope });
  }

  async onModuleInit(): Promise<void> {
    this.uninstall = await this.installing;
  }

  onApplicationShutdown(): void {
    this.unregister();
    this.uninstall?.();
    this.uninstall = undefined;
  }
}

/**
 * Carries the context across `@nestjs/microservices` transports (TCP, Redis, NATS, RabbitMQ, MQTT,
 * gRPC) with zero per-call code: every `ClientProxy.send`/`emit` and gRPC call made inside a context
 * carries the correlation id, `traceparent` (fresh parent id per message), `tracestate` and baggage,
 * and every `@MessagePattern`/`@EventPattern`/`@GrpcMethod` handler runs inside a context restored
 * from its message. Import it once, next to `ContextModule.forRoot()`, in every app that sends or
 * receives messages (keep `ContextModule`'s `interceptor` option on).
 *
 * TCP and Redis carry the context in `packet.metadata` on NestJS 12 and in the payload envelope on
 * NestJS 11; receivers read both. Pass `{ forceEnvelope: true }` while NestJS 11 receivers remain.
 *
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext), ContextMicroservicesModule.forRoot()] })
 * export class AppModule {}
 */
@Module({ providers: [MicroservicesPropagation] })
export class ContextMicroservicesModule {
  /**
   * The module, with options (importing the class itself is `forRoot()` without options). Throws
   * `ContextConfigError` for invalid options.
   */
  static forRoot(options?: ContextMicroservicesOptions): DynamicModule {
    const forceEnvelope = checkForceEnvelope(options, 'ContextMicroservicesModule.forRoot()');
    return {
      module: ContextMicroservicesModule,
      providers: [{ provide: CONTEXT_MICROSERVICES_OPTIONS, useValue: { forceEnvelope } satisfies ContextMicroservicesOptions }],
    };
  }
}
