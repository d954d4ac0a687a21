/** Injection token of the options given to `forRoot`/`forRootAsync` (unchecked; the host resolves them). @internal */
export const CONTEXT_MODULE_OPTIONS = Symbol.for('nestjs-context:module-options');

/** Injection token of the user's context class given to `ContextModule.forRoot()`. @internal */
export const CONTEXT_CLASS = Symbol.for('nestjs-context:context-class');

/** Injection token of the module's `interceptor` switch (whether its global interceptor is mounted). @internal */
export const CONTEXT_INTERCEPTOR_ON = Symbol.for('nestjs-context:interceptor-on');

/**
 * Key under which the per-request record hangs on the Node request object (`IncomingMessage`).
 * Registered globally (`Symbol.for`) so the ESM and CommonJS builds of this package agree on it.
 * @internal
 */
export const RECORD_KEY = Symbol.for('nestjs-context:record');

/**
 * Key under which an instrumentation that reads a request or message before this library does
 * (`nestjs-context/observe`: `@nestjs/observe`'s processing hooks) leaves the id it minted for it, on
 * the Node request or the transport's per-message context object. When the app accepts no inbound
 * id for that request, its record adopts this id (if it passes the app's `validate`) instead of
 * generating one, so both share one id. `Symbol.for`, so every build and copy of the package agree.
 * @internal
 */
export const MINTED_ID_KEY = Symbol.for('nestjs-context:minted-id');

/** Default inbound headers read for a correlation id, in order. @internal */
export const DEFAULT_REQUEST_HEADERS: readonly string[] = ['x-request-id', 'x-correlation-id'];

/** Default response header that echoes the correlation id. @internal */
export const DEFAULT_RESPONSE_HEADER = 'x-request-id';
