/**
 * nestjs-context: a typed, per-request context object for NestJS, reachable anywhere in the app
 * and carried across services. One name per job:
 * - set up: {@link ContextModule} (`forRoot` / `forRootAsync`);
 * - read the context: `@Ctx()` in handlers, {@link ContextService} in providers, {@link currentContext}
 *   anywhere, or constructor injection of your own class;
 * - open a context outside a request: `contextService.run()` or `@WithContext()`;
 * - carry the context over a client or consumer of your own: `contextService.inject(carrier)` and
 *   `contextService.run(fn, { headers })` (with a {@link CarrierSetter} / {@link CarrierGetter} for any
 *   carrier), or {@link getOutboundHeaders} for a plain object without injection;
 * - errors: {@link ContextError} and its subclasses.
 *
 * @module nestjs-context
 */
export { ContextModule } from './module/context.module.js';
export { ContextService, type ContextRunOptions } from './access/context.service.js';
export { Ctx } from './access/ctx.decorator.js';
export { currentContext, getOutboundHeaders, type OutboundOptions, type ContextRegistry, type RegisteredContext } from './access/current-context.js';
export { WithContext, type WithContextOptions } from './access/with-context.decorator.js';
export { ContextError, ContextNotActiveError, ContextConfigError, ContextCreationError, ContextCallbackError } from './errors.js';
export { isValidCorrelationId } from './propagation/correlation-id.js';
export type { CarrierGetter, CarrierSetter } from './propagation/carrier.js';
export * from './interfaces/index.js';
