import type { IncomingMessage } from 'node:http';
import type { ModuleMetadata, Type, InjectionToken, OptionalFactoryDependency } from '@nestjs/common';
import type { ContextFactory, ContextSource } from './context-init.interface.js';
import type { BaggageOptions, TraceOptions } from './propagation-options.interface.js';

/**
 * Decides per request whether inbound propagation headers (such as the correlation id) are honoured.
 * `true` (default): always. `false`: never, every request gets a fresh id (an internet-facing edge).
 * A function: honoured when it returns `true` for the request, e.g. only from internal networks.
 * Untrusted input is ignored, never rejected.
 */
export type TrustInbound = boolean | ((request: IncomingMessage) => boolean);

/**
 * What `correlationId.generate` receives: where the context is being opened, and the inbound data
 * to derive an id from (for example an API gateway's own request id header). Given whatever the
 * trust policy says: an id you derive from it is yours to trust, and it is still checked with
 * `correlationId.validate`.
 */
export interface GenerateInput {
  /** What opens the context (`'http'`, `'rpc'`, `'bullmq'`, `'manual'`, …). */
  readonly source: ContextSource;
  /** The Node request, for HTTP requests (and WebSocket handshakes). */
  readonly request?: IncomingMessage;
  /** The inbound headers (HTTP) or header-like message or job metadata, when there are any. Names are lower-case. */
  readonly headers?: Readonly<Record<string, string | readonly string[] | undefined>>;
}

/** How the correlation id is read, checked, made and echoed. */
export interface CorrelationIdOptions {
  /**
   * Inbound headers to read the id from, in order; the first valid value wins.
   * Names are case-insensitive. Default: `['x-request-id', 'x-correlation-id']`.
   */
  requestHeaders?: readonly string[];
  /**
   * Response header that echoes the id on every response (also 4xx/5xx), or `false` for none.
   * Default: `'x-request-id'`.
   */
  responseHeader?: string | false;
  /**
   * Accepts or rejects an inbound id. A rejected id is replaced by a fresh one and never echoed.
   * Default: 1–128 characters of `[A-Za-z0-9._:-]`.
   */
  validate?: (id: string) => boolean;
  /**
   * Makes a fresh id when no valid inbound one is taken; it receives a {@link GenerateInput} (the
   * request, message or job metadata, or just the source) to derive one from. Return `undefined` for
   * the default id. An id it returns that `validate` rejects is replaced by the default id, and the
   * first one is logged as a warning. Default: a time-ordered UUID version 7 (RFC 9562), made without a dependency.
   */
  generate?: (input: GenerateInput) => string | undefined;
  /** Whether inbound ids are honoured at all. Default: the module's `trustInbound`. */
  trustInbound?: TrustInbound;
  /**
   * Header that carries the id on outgoing calls (HTTP clients, messages), or `false` for none.
   * Default: the first of `requestHeaders` (`'x-request-id'`).
   */
  outboundHeader?: string | false;
  /**
   * Adds `responseHeader` to `Access-Control-Expose-Headers` on every response, merged with what
   * the app's CORS set-up writes (`app.enableCors()` on Express or Fastify), so that browser code on
   * another origin can read the id. Needs a `responseHeader`. Default: `false`.
   */
  exposeHeader?: boolean;
  /**
   * Adds the correlation id to the JSON body of error responses that Nest sends (status 400 and
   * above, an object body: its default exception filter's `{ statusCode, message }`, and filters that
   * answer with `httpAdapter.reply()`). `true` adds it as `correlationId`; a string names the field.
   * A body that already has the field keeps it. For filters that write the response themselves, see
   * `ContextService.withCorrelationId()`. Default: `false`.
   */
  errorBody?: boolean | string;
}

/**
 * Options of `ContextModule.forRoot(MyContext, options)`.
 * @typeParam T the user's context class.
 */
export interface ContextModuleOptions<T extends object = object> {
  /**
   * Builds the context object. Default: `new MyContext(init)` — the constructor receives a
   * {@link ContextInit} and may ignore it.
   */
  factory?: ContextFactory<T>;
  /**
   * Field of the context that receives the correlation id when the constructor or factory left it
   * `undefined`, or `false` to never write to the context. Default: `'correlationId'`.
   */
  correlationIdField?: (keyof T & string) | false;
  /** Correlation id behaviour; see {@link CorrelationIdOptions}. */
  correlationId?: CorrelationIdOptions;
  /** W3C Trace Context behaviour; see {@link TraceOptions}. */
  trace?: TraceOptions;
  /** W3C Baggage behaviour; see {@link BaggageOptions}. */
  baggage?: BaggageOptions;
  /**
   * Whether inbound propagation headers (correlation id, `traceparent`/`tracestate`, `baggage`) are
   * honoured; see {@link TrustInbound}. Each can be overridden in its own section. Default: `true`.
   */
  trustInbound?: TrustInbound;
  /**
   * Enter the context at the very start of every HTTP request, before body parsing, middleware and
   * guards, so that every stage of the pipeline and every error response sees it. Default: `true`.
   * It wraps the server's request handling itself; no middleware is added. With `false`, the context
   * is entered by the interceptor, and middleware, guards and filters that run before it don't see it.
   */
  enterEarly?: boolean;
}

/**
 * How constructor injection of your context class is provided (`injection` of `forRoot`/`forRootAsync`):
 * - `'request'` (default): a request-scoped provider holding the request's context object itself.
 *   Nest's request scope bubbles: everything that injects it, directly or not, becomes request-scoped
 *   and is built again for every request.
 * - `'proxy'`: a singleton that stands for the current context: every property read, write, `in` and
 *   method call goes to the context of the request, message or job being handled (methods bound to
 *   the real object), `instanceof` your class holds, and used outside a context it throws
 *   `ContextNotActiveError`. Nothing becomes request-scoped, so cron jobs, gateways and event
 *   listeners can inject it too. It is not the context object itself: use `ContextService.get()` for
 *   identity or to keep the object beyond the request.
 */
export type ContextInjection = 'request' | 'proxy';

/**
 * Options fixed when the module is declared; they decide which providers exist, so
 * `forRootAsync` takes them beside the factory rather than from it.
 */
export interface ContextModuleStaticOptions {
  /** Register the module globally. Default: `true`. */
  isGlobal?: boolean;
  /**
   * Mount the global interceptor that enters the context around every handler (required for
   * non-HTTP handlers; on HTTP it re-enters a context lost by the framework). Turning it off is the
   * fastest configuration for HTTP-only apps whose context is entered early (`enterEarly`). Default: `true`.
   */
  interceptor?: boolean;
  /**
   * How your context class is provided for constructor injection: `'request'` (a request-scoped
   * provider, whose scope bubbles up to everything that injects it) or `'proxy'` (a singleton that
   * resolves to the current context on every use); see {@link ContextInjection}. Default: `'request'`.
   */
  injection?: ContextInjection;
}

/** A class whose `createContextOptions()` supplies the options, for `forRootAsync({ useClass })`. */
export interface ContextOptionsFactory<T extends object = object> {
  /** Returns the module options (may be async). */
  createContextOptions(): ContextModuleOptions<T> | Promise<ContextModuleOptions<T>>;
}

/** Options of `ContextModule.forRootAsync(MyContext, options)`. */
export interface ContextModuleAsyncOptions<T extends object = object>
  extends ContextModuleStaticOptions,
    Pick<ModuleMetadata, 'imports'> {
  /** Factory returning the options; its arguments are the `inject` tokens. */
  useFactory?: (...args: never[]) => ContextModuleOptions<T> | Promise<ContextModuleOptions<T>>;
  /** Tokens to inject into `useFactory`. */
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  /** A class implementing {@link ContextOptionsFactory}, instantiated by the module. */
  useClass?: Type<ContextOptionsFactory<T>>;
  /** An existing provider implementing {@link ContextOptionsFactory}. */
  useExisting?: Type<ContextOptionsFactory<T>>;
}
