import { Injectable, Module, Optional, type DynamicModule, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ContextConfigError } from '../../context.errors.js';
import { ContextHost } from '../../context.host.js';
import { extractCarrier } from './carrier.js';
import { registerHost } from './hosts.js';
import { installMicroservicesPropagation } from './install.js';

const TRACE_HEADERS = ['traceparent', 'tracestate', 'baggage'];

/** Registers the `'rpc'` extractor on the app's `ContextHost` and installs propagation. @internal */
@Injectable()
export class MicroservicesPropagation implements OnModuleInit, OnApplicationShutdown {
  private uninstall: (() => void) | undefined;
  private readonly installing: Promise<() => void>;
  private readonly unregister: () => void;

  constructor(@Optional() host?: ContextHost) {
    if (host === undefined) {
      throw ContextConfigError.create(
        'ContextMicroservicesModule found no ContextModule in this app',
        'Import ContextModule.forRoot(MyContext) in the root module (it is global by default; with isGlobal: false, ' +
          'import ContextMicroservicesModule in the same module).',
      );
    }
    const names = [...new Set([...TRACE_HEADERS, ...host.options.requestHeaders.map((name) => name.toLowerCase())])];
    host.setExtractor('rpc', (data, transport) => extractCarrier(data, transport, names));
    this.unregister = registerHost(host);
    // Patch now, before Nest registers the message handlers (that happens after instantiation).
    this.installing = installMicroservicesPropagation();
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
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext), ContextMicroservicesModule.forRoot()] })
 * export class AppModule {}
 */
@Module({ providers: [MicroservicesPropagation] })
export class ContextMicroservicesModule {
  /** The module (importing the class itself works the same; `forRoot()` leaves room for options). */
  static forRoot(): DynamicModule {
    return { module: ContextMicroservicesModule };
  }
}
