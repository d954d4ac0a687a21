/**
 * `nestjs-context/websockets`: gateway messages get their context before Nest's pipeline (guards
 * included), optionally continuing the handshake's. For `@nestjs/websockets` gateways.
 *
 * @module nestjs-context/websockets
 */
import type { IncomingMessage } from 'node:http';
import { Inject, Injectable, Module, Optional, type DynamicModule } from '@nestjs/common';
import { ApplicationConfig } from '@nestjs/core';
import { ContextHost, reportFailure } from '../../runtime/context-host.js';
import { ContextCallbackError } from '../../errors.js';
import { describeError } from '../../runtime/options.js';
import { enterRecord, keepInRecord, runInRecord, type Carrier, type ContextRecord } from '../../record/context-record.js';
import { hostOrThrow } from '../../runtime/apps.js';
import { inOperationScope, markInternal } from '../../runtime/internal.js';

/** Options of {@link ContextWsModule.forRoot}. */
export interface ContextWsOptions {
  /**
   * Use the WebSocket handshake's headers (`x-request-id` / `x-correlation-id`, `traceparent`,
   * `tracestate`, `baggage`) as the inbound carrier of every message of that connection: each
   * message then keeps the connection's correlation id and trace id, with its own span id.
   * `true` trusts every handshake, a function decides per handshake request (e.g. by a shared
   * secret header). The app's `trustInbound` (and its per-kind overrides) applies on top of this,
   * evaluated on the handshake request. A function that throws trusts nothing: the message gets a
   * fresh context and the failure is logged once with its stack through Nest's logger.
   * Default: `false` (every message gets a fresh id and a new trace).
   */
  handshake?: boolean | ((request: IncomingMessage) => boolean);
}

/** Injection token of the {@link ContextWsOptions}. */
const CONTEXT_WS_OPTIONS = Symbol.for('nestjs-context:websockets-options');

interface SocketLike {
  request?: { headers?: unknown };
  handshake?: { headers?: unknown };
}

/** Handshake headers the library reads besides the app's correlation id headers. */
const TRACE_HEADERS = ['traceparent', 'tracestate', 'baggage'];
/** Most values of one repeated handshake header kept. */
const MAX_VALUES = 16;

/**
 * The own headers `names` of a handshake, copied into a prototype-free carrier of strings and lists
 * of strings. The context reads its carrier lazily (the trace on first use), so the socket's own
 * headers object — in-process sockets may hold getters that throw or values of any type — never
 * reaches it; a header that cannot be read is left out.
 */
function copyHeaders(headers: object, names: readonly string[]): Carrier {
  const out = Object.create(null) as Record<string, string | readonly string[]>;
  for (const name of names) {
    try {
      // Own headers only, as Node's request has them: nothing inherited from a prototype.
      if (!Object.prototype.hasOwnProperty.call(headers, name)) continue;
      const value: unknown = (headers as Record<string, unknown>)[name];
      if (typeof value === 'string') {
        out[name] = value;
      } else if (Array.isArray(value)) {
        const list: string[] = [];
        const n = Math.min(value.length, MAX_VALUES);
        for (let i = 0; i < n; i++) {
          const item: unknown = value[i];
          if (typeof item === 'string') list.push(item);
        }
        if (list.length > 0) out[name] = list;
      }
    } catch {
      // A getter that throws, a revoked Proxy: no such header.
    }
  }
  return out;
}

/**
 * The handshake request and headers of a socket.io socket, if `client` is one; `undefined` too for
 * a socket whose handshake cannot be read (a getter that throws, a revoked Proxy).
 */
function handshakeOf(client: unknown): { request: IncomingMessage | undefined; headers: object } | undefined {
  if (typeof client !== 'object' || client === null) return undefined;
  try {
    // A socket.io socket: it has an id and a handshake (a message payload rarely has both).
    if (!('handshake' in client) || !('id' in client)) return undefined;
    const socket = client as SocketLike;
    const request = socket.request as IncomingMessage | undefined;
    const headers = request?.headers ?? socket.handshake?.headers;
    if (typeof headers !== 'object' || headers === null) return undefined;
    return { request, headers };
  } catch {
    return undefined;
  }
}

type Policy = NonNullable<ContextWsOptions['handshake']>;
type AnyFn = (...args: unknown[]) => unknown;

/** One message handler as Nest hands it to a WebSocket adapter. */
interface MessageHandlerLike {
  callback: AnyFn;
  [key: string]: unknown;
}

/** The part of a Nest WebSocket adapter (`IoAdapter`, `WsAdapter`, custom ones) this integration wraps. */
interface AdapterLike {
  bindMessageHandlers(client: unknown, handlers: MessageHandlerLike[], transform: AnyFn): unknown;
  bindClientConnect?(server: unknown, callback: AnyFn): unknown;
  bindClientDisconnect?(client: unknown, callback: AnyFn): unknown;
}

const TAG = Symbol.for('nestjs-context:websockets');

const HANDSHAKE_FAILED = 'The handshake was not trusted: the context got a fresh correlation id and trace.';

/** The trusted handshake of a message: its headers `names` and request when the policy trusts them. */
function trustedHandshake(
  policy: Policy,
  names: readonly string[],
  ...candidates: unknown[]
): { request: IncomingMessage | undefined; headers: Carrier } | undefined {
  if (policy === false) return undefined;
  let found: ReturnType<typeof handshakeOf>;
  for (const candidate of candidates) if ((found = handshakeOf(candidate)) !== undefined) break;
  if (found === undefined) return undefined;
  if (policy !== true) {
    if (found.request === undefined) return undefined;
    try {
      if (policy(found.request) !== true) return undefined;
    } catch (error) {
      // Like the app's own callbacks: untrusted (a fresh context), reported once with its stack.
      reportFailure(
        ContextCallbackError.create('ContextWsModule.forRoot() handshake', `threw ${describeError(error)}`, error, HANDSHAKE_FAILED),
      );
      return undefined;
    }
  }
  return { request: found.request, headers: copyHeaders(found.headers, names) };
}


/**
 * Enters a context per WebSocket message before Nest's pipeline runs (so guards, interceptors,
 * pipes, the handler and exception filters all see it), by wrapping the message handlers the app's
 * WebSocket adapter binds; registers the `'ws'` carrier extractor for the global interceptor too.
 * @internal
 */
@Injectable()
class ContextWsSetup {
  private readonly policy: Policy;
  /** The handshake headers read: the trace headers and the app's correlation id headers. */
  private readonly names: readonly string[];

  constructor(
    @Optional() @Inject(ContextHost) host: ContextHost | undefined,
    config: ApplicationConfig,
    @Optional() @Inject(CONTEXT_WS_OPTIONS) options: ContextWsOptions = {},
  ) {
    const found = hostOrThrow(host, 'ContextWsModule');
    const policy = options?.handshake ?? false;
    if (policy !== true && policy !== false && typeof policy !== 'function') {
      throw new TypeError(
        `ContextWsModule.forRoot(): handshake must be true, false or a function of the handshake request, got ${typeof policy}. ` +
          'Leave it out to give every message a fresh context.',
      );
    }
    this.policy = policy;
    const names = [...new Set([...TRACE_HEADERS, ...found.options.requestHeaders.map((name) => name.toLowerCase())])];
    this.names = names;
    // Nest hands WebSocket handlers (client, data, …), so the socket may come as either argument.
    if (policy !== false) found.setExtractor('ws', (first, second) => trustedHandshake(policy, names, first, second)?.headers);

    // The adapter is chosen after the app is built (app.useWebSocketAdapter) and used at init:
    // wrap whatever adapter Nest reads from the config when it binds the gateways.
    const getIoAdapter = config.getIoAdapter.bind(config);
    config.getIoAdapter = () => {
      const adapter = getIoAdapter() as unknown as AdapterLike | undefined | null;
      if (adapter !== undefined && adapter !== null) this.wrapAdapter(adapter, found);
      return adapter as never;
    };
  }

  private wrapAdapter(adapter: AdapterLike, host: ContextHost): void {
    const target = adapter as unknown as Record<string | symbol, unknown>;
    if (target[TAG] === true || typeof adapter.bindMessageHandlers !== 'function') return;
    Object.defineProperty(target, TAG, { value: true });
    const policy = this.policy;
    const names = this.names;
    // A message's record decides a generated id on first read (`defer`): an instrumentation that opens
    // its own operation for the message inside this wrapper (`@nestjs/observe`) names it first, and
    // with `nestjs-context/observe` the record adopts that name (one id for both).
    const open = (client: unknown, defer: boolean): ContextRecord => {
      const found = trustedHandshake(policy, names, client);
      return found === undefined
        ? host.create({ source: 'ws', deferId: defer })
        : host.fromCarrier(found.headers, 'ws', found.request, { deferId: defer });
    };

    const bindMessages = adapter.bindMessageHandlers;
    adapter.bindMessageHandlers = function (client: unknown, handlers: MessageHandlerLike[], transform: AnyFn) {
      const wrapped = Array.isArray(handlers)
        ? handlers.map((handler) => {
            const callback = handler.callback;
            if (typeof callback !== 'function') return handler;
            return {
              ...handler,
              callback: (...args: unknown[]) => {
                const record = open(client, true);
                // An operation an instrumentation opens inside `callback` (`@nestjs/observe`) covers only
                // that call; Nest subscribes to the handler's Observable (interceptors, handler) after
                // it returned. That subscription then runs inside the operation too.
                const { result, scope } = inOperationScope(() => enterRecord(record, () => callback(...args)));
                return keepInRecord(result, record, scope);
              },
            };
          })
        : handlers;
      return bindMessages.call(this, client, wrapped, transform);
    };

    // handleConnection / handleDisconnect of gateways: a context of their own, from the handshake too.
    const bindConnect = adapter.bindClientConnect;
    if (typeof bindConnect === 'function') {
      adapter.bindClientConnect = function (server: unknown, callback: AnyFn) {
        if (typeof callback !== 'function') return bindConnect.call(this, server, callback);
        return bindConnect.call(this, server, (...args: unknown[]) => runInRecord(open(args[0], false), () => callback(...args)));
      };
    }
    const bindDisconnect = adapter.bindClientDisconnect;
    if (typeof bindDisconnect === 'function') {
      adapter.bindClientDisconnect = function (client: unknown, callback: AnyFn) {
        if (typeof callback !== 'function') return bindDisconnect.call(this, client, callback);
        return bindDisconnect.call(this, client, (...args: unknown[]) => runInRecord(open(client, false), () => callback(...args)));
      };
    }
  }
}

/**
 * WebSocket gateways (`@SubscribeMessage()` handlers). Without it, every message already gets its
 * own context from the global `ContextInterceptor`, but only from the interceptor on (guards run
 * before it and see none). With it, the context is entered before Nest's pipeline, for every
 * adapter (socket.io, ws), guards and filters included; and `handshake` continues the connection's
 * correlation id and trace in every message.
 *
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext), ContextWsModule.forRoot({ handshake: true })] })
 */
@Module({})
export class ContextWsModule {
  /** Registers the integration (global). */
  static forRoot(options: ContextWsOptions = {}): DynamicModule {
    return {
      module: ContextWsModule,
      global: true,
      providers: [{ provide: CONTEXT_WS_OPTIONS, useValue: options }, ContextWsSetup],
    };
  }
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextWsSetup, ContextWsModule);
