export { ContextModule } from './context.module.js';
export { ContextService, type ContextRunOptions } from './context.service.js';
export { ContextInterceptor } from './context.interceptor.js';
export { Ctx, ContextParam } from './ctx.decorator.js';
export {
  currentContext,
  getCurrentContext,
  getOutboundHeaders,
  type OutboundOptions,
  contextOf,
  type ContextRegistry,
  type RegisteredContext,
} from './current-context.js';
export { ContextError, ContextNotActiveError, ContextConfigError, ContextCreationError, ContextCallbackError } from './context.errors.js';
export { CONTEXT_MODULE_OPTIONS, DEFAULT_REQUEST_HEADERS, DEFAULT_RESPONSE_HEADER } from './context.constants.js';
export { isValidCorrelationId, generateCorrelationId } from './propagation/correlation-id.js';
export * from './interfaces/index.js';
export { WithContext, type WithContextOptions } from './with-context.decorator.js';
