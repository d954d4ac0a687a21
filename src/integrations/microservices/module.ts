import { Inject, Injectable, Module, Optional, type DynamicModule, type OnModuleInit } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { ContextConfigError } from '../../errors.js';
import { ContextHost } from '../../runtime/context-host.js';
import { registerAppModules } from './apps.js';
import { extractCarrier } from './carrier.js';
import { checkForceEnvelope, requestEnvelope } from './client.js';
import { acquirePropagation, type ContextMicroservicesOptions } from './install.js';
import { loadOptionalDeps } from './optional-deps.js';
import { markInternal } from '../../runtime/internal.js';

/** Injection token of the options given to `ContextMicroservicesModule.forRoot()`. @internal */
export const CONTEXT_MICROSERVICES_OPTIONS = Symbol.for('nestjs-context:microservices-options');

/**
 * Registers the `'rpc'` extractor on the app's `ContextHost`, marks the app's Nest container as this
 * app's (so the handlers Nest registers for it open this app's context) and takes one reference on
 * the process-wide propagation patches. All of it is undone when the app closes (`app.close()`).
 * @internal
 */
@Injectable()
export class MicroservicesPropagation implements OnModuleInit {
  constructor(
    @Optional() @Inject(ContextHost) host: ContextHost | undefined,
    @Optional() @Inject(CONTEXT_MICROSERVICES_OPTIONS) options: ContextMicroservicesOptions | undefined,
    @Inject(ModulesContainer) modules: ModulesContainer,
  ) {
    if (host === undefined || host === null) {
      throw ContextConfigError.create(
        'ContextMicroservicesModule found no ContextModule in this app',
        'Import ContextModule.forRoot(MyContext) in the root module (it is global by default; with isGlobal: false, ' +
          'import ContextMicroservicesModule in the same module).',
      );
    }
    const forceEnvelope = checkForceEnvelope(options, 'ContextMicroservicesModule.forRoot()');
    // The app's inbound fields: correlation id headers keep every candidate in priority order (the
    // first valid one wins); trace headers keep the first usable value (W3C: one value each).
    const names = host.inboundFields;
    const ids = host.idFields;
    host.setExtractor('rpc', (data, transport) => extractCarrier(data, transport, names, ids));
    // All now, before Nest registers the message handlers (that happens after instantiation); the
    // app's close runs these undo steps in reverse order.
    host.onClose(acquirePropagation());
    if (forceEnvelope) host.onClose(requestEnvelope());
    host.onClose(registerAppModules(modules, host));
  }

  /** Waits for the optional transport libraries (NATS headers, gRPC metadata) before messages flow. */
  async onModuleInit(): Promise<void> {
    await loadOptionalDeps();
  }
}

/**
 * Carries the context across `@nestjs/microservices` transports (TCP, Redis, NATS, RabbitMQ, MQTT,
 * gRPC, Kafka) with zero per-call code: every `ClientProxy.send`/`emit` and gRPC call made inside a context
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

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(MicroservicesPropagation, ContextMicroservicesModule);
