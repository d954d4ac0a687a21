/** Injection token of the resolved {@link ContextModuleOptions}. */
export const CONTEXT_MODULE_OPTIONS = Symbol.for('nestjs-context:module-options');

/** Injection token of the user's context class given to `ContextModule.forRoot()`. */
export const CONTEXT_CLASS = Symbol.for('nestjs-context:context-class');

/**
 * Injection token of the per-module slot through which the request-scoped provider of the user's
 * class reaches its `ContextHost` without declaring it as a dependency (one dependency fewer for
 * Nest to resolve on every request).
 * @internal
 */
export const CONTEXT_HOST_SLOT = Symbol.for('nestjs-context:host-slot');

/**
 * Key under which the per-request record hangs on the Node request object (`IncomingMessage`).
 * Registered globally (`Symbol.for`) so the ESM and CommonJS builds of this package agree on it.
 * @internal
 */
export const RECORD_KEY = Symbol.for('nestjs-context:record');

/** Default inbound headers read for a correlation id, in order. */
export const DEFAULT_REQUEST_HEADERS: readonly string[] = ['x-request-id', 'x-correlation-id'];

/** Default response header that echoes the correlation id. */
export const DEFAULT_RESPONSE_HEADER = 'x-request-id';
