import { Server, ServerGrpc, ServerKafka } from '@nestjs/microservices';
import { ListenersController } from '@nestjs/microservices/listeners-controller.js';
import type { ContextHost } from '../../runtime/context-host.js';
import { runInRecord, storage, type ContextRecord } from '../../record/context-record.js';
import { appOfController, registering } from './apps.js';
import { ENVELOPE_CARRIER } from './carrier.js';
import { CONTEXT_ENVELOPE_KEY, isEnvelope } from './envelope.js';

type Handler = ((...args: unknown[]) => unknown) & { next?: Handler };
type AddHandler = (this: Server, pattern: unknown, callback: Handler, ...rest: unknown[]) => unknown;
type RegisterPatternHandlers = (this: object, instanceWrapper: unknown, serverInstance: unknown, moduleKey: unknown, ...rest: unknown[]) => unknown;

const ORIGINAL = Symbol.for('nestjs-context:microservices-original');
const WRAPPED = Symbol.for('nestjs-context:microservices-wrapped-handler');
const BOUND_CALL = Symbol.for('nestjs-context:grpc-bound-call');

/**
 * Whether a handler argument is Nest's `RequestContextHost` (`{ pattern, data, context }` with its
 * getters), which Nest passes first to the next event handlers of a chain whose first handler is
 * request-scoped. Detected by shape: the class is not exported by `@nestjs/microservices`.
 */
function isRequestContextHost(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  const host = value as Record<string, unknown>;
  try {
    return (
      'pattern' in host &&
      'data' in host &&
      'context' in host &&
      typeof host.getPattern === 'function' &&
      typeof host.getData === 'function' &&
      typeof host.getContext === 'function'
    );
  } catch {
    // A Proxy whose traps throw, or a getter that throws: not Nest's host.
    return false;
  }
}

/**
 * Unwraps a fallback envelope in place: `args[at]` becomes its data and its headers are left on the
 * transport context for the extractor. An envelope whose data cannot be read (a getter that throws)
 * is left as it is; one whose headers cannot be read, or whose transport context cannot hold them
 * (frozen), carries none.
 */
function unwrapEnvelope(args: unknown[], at: number): void {
  const data = args[at];
  let payload: unknown;
  try {
    if (!isEnvelope(data)) return;
    payload = data.data;
  } catch {
    return;
  }
  let carried: unknown;
  try {
    carried = data[CONTEXT_ENVELOPE_KEY] ?? null;
  } catch {
    carried = null;
  }
  const transport = args[at + 1];
  if (transport !== null && typeof transport === 'object') {
    try {
      (transport as { [ENVELOPE_CARRIER]?: unknown })[ENVELOPE_CARRIER] = carried;
    } catch {
      // Frozen or exotic transport context: the envelope's headers are not read.
    }
  }
  args[at] = payload;
}

/**
 * Where a gRPC handler gets the call object, by the streaming kind in its pattern: a
 * `@GrpcStreamCall` handler first (`call`, or `call, callback`), a `@GrpcStreamMethod` or
 * `@GrpcMethod` handler third (`request or Observable, metadata, call`).
 */
function grpcCallIndex(pattern: unknown): number {
  let streaming: unknown;
  try {
    const parsed: unknown = typeof pattern === 'string' ? JSON.parse(pattern) : pattern;
    streaming = parsed !== null && typeof parsed === 'object' ? (parsed as { streaming?: unknown }).streaming : undefined;
  } catch {
    streaming = undefined;
  }
  return streaming === 'pt_stream' ? 0 : 2;
}

/**
 * Makes every event of one gRPC call reach its listeners inside the call's record: grpc-js emits
 * `data`, `end`, `error`, `cancelled` and `drain` from the HTTP/2 session's callbacks, outside any
 * context. That covers the listener through which Nest feeds a `@GrpcStreamMethod` handler's
 * inbound Observable (so its operators, and the replies they produce, run in the call's context)
 * and the listeners a `@GrpcStreamCall` handler adds itself. Done with an own `emit` on that one
 * call object; anything that is not an emitter, or cannot take it (frozen), is left as it is.
 */
function bindCall(call: unknown, record: ContextRecord): void {
  if (call === null || typeof call !== 'object') return;
  try {
    const emit = (call as { emit?: unknown }).emit;
    if (typeof emit !== 'function' || Object.prototype.hasOwnProperty.call(call, BOUND_CALL)) return;
    const bound = function (this: unknown, ...args: unknown[]): unknown {
      return storage.getStore() === record ? emit.apply(this, args) : storage.run(record, () => emit.apply(this, args));
    };
    Object.defineProperty(call, 'emit', { value: bound, writable: true, configurable: true, enumerable: false });
    Object.defineProperty(call, BOUND_CALL, { value: true });
  } catch {
    // A frozen or proxied call object: its events are delivered as grpc-js emits them.
  }
}

/**
 * Opens the message's context of the handler's app (`host`) around the handler, so guards see it
 * too and it exists even where Nest's global interceptor is not applied (hybrid apps without
 * `inheritAppConfig`). Starts from no context at all, so a context that leaked into the transport's
 * callbacks is never reused. Once the app has closed, the handler runs outside any context. For a
 * gRPC handler, `callAt` is where its call object is: the call's events are delivered in the record.
 */
function runInMessageContext(self: unknown, callback: Handler, args: unknown[], at: number, host: ContextHost, callAt: number | undefined): unknown {
  let record: ContextRecord | undefined;
  try {
    record = host.closed ? undefined : host.forMessage('rpc', args[at], args[at + 1]);
  } catch {
    // E.g. a user-supplied id generator threw: leave it to the interceptor, which reports it.
    record = undefined;
  }
  if (record === undefined) return callback.apply(self, args);
  if (callAt !== undefined) bindCall(args[callAt], record);
  return runInRecord(record, () => callback.apply(self, args));
}

/**
 * Wraps one message handler of the app `host` (bound when Nest registered it): unwraps a fallback
 * envelope (the handler, guards, pipes and interceptors see the original payload; the headers are
 * left on the transport context for the extractor), and runs it outside any context that leaked into
 * the transport's callbacks, in the context its app opens from the message's metadata, so every
 * message starts from its own metadata. Event-handler chains (`next`) keep working. A gRPC
 * handler's call (at `callAt`) delivers its events in that context too.
 */
function wrapHandler(callback: Handler, host: ContextHost, callAt?: number): Handler {
  if ((callback as { [WRAPPED]?: true })[WRAPPED]) return callback;
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    // The next handlers of a chain whose first one is request-scoped get (RequestContextHost, data, ctx).
    const at = isRequestContextHost(args[0]) ? 1 : 0;
    unwrapEnvelope(args, at);
    return storage.getStore() === undefined
      ? runInMessageContext(this, callback, args, at, host, callAt)
      : storage.exit(() => runInMessageContext(this, callback, args, at, host, callAt));
  } as Handler;
  // Nest chains several event handlers of one pattern through `next` on the registered function.
  Object.defineProperty(wrapped, 'next', {
    get: () => callback.next,
    set: (next: Handler | undefined) => {
      callback.next = next;
    },
    enumerable: true,
    configurable: true,
  });
  Object.defineProperty(wrapped, WRAPPED, { value: true });
  return wrapped;
}

type Patched<F> = F & { [ORIGINAL]?: F };

/**
 * Replaces `target[key]` by `wrap(current)` unless it is already patched (by this or another build
 * or copy of the package); returns the undo step, which puts Nest's own method back.
 */
function patchMethod<F>(target: Record<string, unknown>, key: string, wrap: (original: F) => F): () => void {
  const current = target[key] as Patched<F> | undefined;
  if (typeof current !== 'function' || current[ORIGINAL] !== undefined) return () => undefined;
  const had = Object.prototype.hasOwnProperty.call(target, key);
  const wrapped = wrap(current) as Patched<F>;
  wrapped[ORIGINAL] = current;
  target[key] = wrapped;
  return () => {
    if (target[key] !== wrapped) return;
    if (had) target[key] = current;
    else delete target[key];
  };
}

/**
 * `addHandler` that wraps the handler, bound to its app, when Nest is registering the handlers of an
 * app that imports `ContextMicroservicesModule`. Any other handler (of an app without the module,
 * or added by hand) is registered untouched: such an app behaves as if the library were not there.
 * `callAtOf` (gRPC) tells from the pattern where the handler gets its call object.
 */
function wrapAddHandler(original: AddHandler, callAtOf?: (pattern: unknown) => number): AddHandler {
  return function (this: Server, pattern, callback, ...rest) {
    const host = registering.host;
    if (host === undefined || typeof callback !== 'function') return original.call(this, pattern, callback, ...rest);
    return original.call(this, pattern, wrapHandler(callback, host, callAtOf?.(pattern)), ...rest);
  };
}

/**
 * `registerPatternHandlers` that holds the controller's app in {@link registering} while Nest
 * registers its handlers (it calls `addHandler` synchronously), and restores what was there after.
 */
function wrapRegisterPatternHandlers(original: RegisterPatternHandlers): RegisterPatternHandlers {
  return function (this: object, instanceWrapper, serverInstance, moduleKey, ...rest) {
    const previous = registering.host;
    registering.host = appOfController(this, instanceWrapper, moduleKey);
    try {
      return original.call(this, instanceWrapper, serverInstance, moduleKey, ...rest);
    } finally {
      registering.host = previous;
    }
  };
}

/**
 * Patches `ListenersController#registerPatternHandlers`, which tells which app's handlers Nest is
 * registering, and `Server#addHandler` (every transport, including custom ones extending `Server`),
 * `ServerGrpc#addHandler` and `ServerKafka#addHandler` (NestJS 12), so the handlers of apps that
 * import `ContextMicroservicesModule`, registered from now on, unwrap the fallback envelope and open
 * their own app's context (gRPC calls also deliver their events in it). Returns the undo step, which
 * puts Nest's methods back. @internal
 */
export function patchServers(): () => void {
  const undo = [
    patchMethod<AddHandler>(Server.prototype as unknown as Record<string, unknown>, 'addHandler', (original) => wrapAddHandler(original)),
    patchMethod<AddHandler>(
      ServerGrpc.prototype as unknown as Record<string, unknown>,
      'addHandler',
      (original) => wrapAddHandler(original, grpcCallIndex),
    ),
    // NestJS 12's ServerKafka registers RegExp patterns itself, without Server#addHandler (on 11 this is a no-op).
    patchMethod<AddHandler>(ServerKafka.prototype as unknown as Record<string, unknown>, 'addHandler', (original) => wrapAddHandler(original)),
    patchMethod<RegisterPatternHandlers>(
      ListenersController.prototype as unknown as Record<string, unknown>,
      'registerPatternHandlers',
      wrapRegisterPatternHandlers,
    ),
  ];
  return () => undo.forEach((fn) => fn());
}
