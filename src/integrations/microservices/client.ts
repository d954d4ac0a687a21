import {
  ClientGrpcProxy,
  ClientKafka,
  ClientMqtt,
  ClientNats,
  ClientProxy,
  ClientRedis,
  ClientRMQ,
  ClientTCP,
  MqttRecord,
  NatsRecord,
  RedisContext,
  RmqRecord,
  TcpContext,
} from '@nestjs/microservices';
import { isObservable, Observable } from 'rxjs';
import { ContextConfigError, describe } from '../../errors.js';
import { storage, type ContextRecord } from '../../record/context-record.js';
import { outboundHeaders } from '../../propagation/inject.js';
import { isEnvelope, wrapEnvelope } from './envelope.js';
import { withKafkaBatch, withKafkaHeaders } from './kafka.js';
import { loaded, loadOptionalDeps, type GrpcMetadataLike, type NatsHeadersLike } from './optional-deps.js';

/**
 * How the context travels on one client: a transport's own headers (`rmq`, `nats`, `mqtt` 5),
 * Nest's packet metadata (`metadata`: TCP and Redis where the installed Nest has it), the fallback
 * envelope, or not at all. @internal
 */
type Carriage = 'rmq' | 'nats' | 'mqtt' | 'kafka' | 'metadata' | 'envelope' | 'none';

function hasMethod(type: unknown, method: string): boolean {
  const proto = typeof type === 'function' ? (type as { prototype?: Record<string, unknown> }).prototype : undefined;
  return typeof proto?.[method] === 'function';
}

/**
 * Whether the installed `@nestjs/microservices` carries `packet.metadata` end to end for a
 * transport: the client builds its packets through `ClientProxy#createPacket` (NestJS 12) and the
 * transport's server context exposes `getMetadata()` (NestJS 12: `TcpContext`, `RedisContext`).
 * NestJS 11 has neither, so it takes the envelope. MQTT 3.1.1 always does: no Nest version's MQTT
 * server reads `packet.metadata`. @internal
 */
export const packetMetadataSupport: { readonly tcp: boolean; readonly redis: boolean } = (() => {
  const createPacket = hasMethod(ClientProxy, 'createPacket');
  return Object.freeze({
    tcp: createPacket && hasMethod(TcpContext, 'getMetadata'),
    redis: createPacket && hasMethod(RedisContext, 'getMetadata'),
  });
})();

/** Marks a client that must use the envelope (`propagateContext(client, { forceEnvelope: true })`). */
const FORCE_ENVELOPE = Symbol.for('nestjs-context:microservices-force-envelope');

/**
 * How many active installs asked for `forceEnvelope` (the envelope wins while any one does). Kept
 * on `globalThis` under a registered symbol, like the patch markers, so the ESM and CommonJS
 * builds loaded side by side share it.
 */
const envelopeRequests: { count: number } = ((globalThis as { [key: symbol]: unknown })[
  Symbol.for('nestjs-context:microservices-envelope-requests')
] ??= { count: 0 }) as { count: number };

/**
 * Makes TCP and Redis clients use the envelope process-wide until the returned function is called
 * (once; further calls do nothing). Counted: the envelope stays while any request is active. @internal
 */
export function requestEnvelope(): () => void {
  envelopeRequests.count++;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    envelopeRequests.count--;
  };
}

function envelopeForced(client: object): boolean {
  return envelopeRequests.count > 0 || (client as { [FORCE_ENVELOPE]?: boolean })[FORCE_ENVELOPE] === true;
}

function carriageOf(client: object): Carriage {
  if (client instanceof ClientRMQ) return 'rmq';
  if (client instanceof ClientNats) return 'nats';
  if (client instanceof ClientKafka) return 'kafka';
  if (client instanceof ClientMqtt) {
    const options = (client as unknown as { options?: { protocolVersion?: number } }).options;
    return options?.protocolVersion === 5 ? 'mqtt' : 'envelope';
  }
  if (client instanceof ClientTCP) return packetMetadataSupport.tcp && !envelopeForced(client) ? 'metadata' : 'envelope';
  if (client instanceof ClientRedis) return packetMetadataSupport.redis && !envelopeForced(client) ? 'metadata' : 'envelope';
  return 'none';
}

/** Headers of the active context for one outgoing message, or `undefined` outside a context. */
function currentHeaders(): Record<string, string> | undefined {
  const record = storage.getStore();
  if (record === undefined) return undefined;
  const headers = outboundHeaders(record);
  return Object.keys(headers).length === 0 ? undefined : headers;
}

function isRecordObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function natsRecord(data: unknown, headers: Record<string, string>): NatsRecord | undefined {
  const make = loaded.natsHeaders;
  if (data instanceof NatsRecord) {
    const own = data.headers as NatsHeadersLike | undefined;
    if (make === undefined) {
      // Without the factory the headers cannot be copied, and the user's object (perhaps reused for
      // several messages) must not be changed: the context goes in the envelope, the headers stay.
      if (isEnvelope(data.data)) return data;
      return new NatsRecord(wrapEnvelope(data.data, headers), data.headers as never);
    }
    // Copy the user's headers so a record reused for several messages is not changed.
    const merged = make();
    if (own !== undefined && typeof own.keys === 'function') {
      for (const name of own.keys()) for (const value of own.values(name)) merged.set(name, value);
    }
    for (const name in headers) if (!merged.has(name)) merged.set(name, headers[name] as string);
    return new NatsRecord(data.data, merged as never);
  }
  if (make === undefined) return undefined;
  const merged = make();
  for (const name in headers) merged.set(name, headers[name] as string);
  return new NatsRecord(data, merged as never);
}

/**
 * Returns the payload to hand to `client.send/emit` so the message carries the active context:
 * the transport's own metadata where it has one (RabbitMQ headers, NATS headers, MQTT 5 user
 * properties, Kafka message headers), else the fallback envelope. Headers the caller set on a record win. Outside a
 * context, for a client it does not know, or where the context goes into `packet.metadata`
 * instead (see {@link withPacketMetadata}), returns `data` unchanged. Never throws.
 * @internal
 */
export function withOutboundContext(client: object, data: unknown): unknown {
  try {
    // Nest rejects a nil payload itself (InvalidMessageException); keep it that way.
    if (data === undefined || data === null) return data;
    const carriage = carriageOf(client);
    if (carriage === 'none' || carriage === 'metadata' || isEnvelope(data)) return data;
    const headers = currentHeaders();
    if (headers === undefined) return data;
    switch (carriage) {
      case 'rmq': {
        if (data instanceof RmqRecord) {
          const options = data.options ?? {};
          const own = isRecordObject(options.headers) ? options.headers : {};
          return new RmqRecord(data.data, { ...options, headers: { ...headers, ...own } });
        }
        return new RmqRecord(data, { headers });
      }
      case 'nats':
        return natsRecord(data, headers) ?? (data instanceof NatsRecord ? data : wrapEnvelope(data, headers));
      case 'mqtt': {
        if (data instanceof MqttRecord) {
          const options = data.options ?? {};
          const properties = options.properties ?? {};
          const own = isRecordObject(properties.userProperties) ? properties.userProperties : {};
          return new MqttRecord(data.data, { ...options, properties: { ...properties, userProperties: { ...headers, ...own } } });
        }
        return new MqttRecord(data, { properties: { userProperties: headers } });
      }
      case 'kafka':
        return withKafkaHeaders(client, data, headers);
      case 'envelope':
        return wrapEnvelope(data, headers);
    }
  } catch {
    return data;
  }
}

/** An outgoing packet as `ClientProxy#createPacket` builds it (NestJS 12). */
interface PacketLike {
  pattern: unknown;
  data: unknown;
  metadata?: unknown;
}

/**
 * Puts the active context's headers into `packet.metadata` of a packet a TCP or Redis client just
 * built (NestJS 12), merged under what is already there: metadata the user set (e.g. through
 * `setOnDispatchHook`) wins on conflict and is never mutated. Leaves the packet alone outside a
 * context, for other clients, when the envelope is forced, when the payload already is an envelope,
 * or when the user set `metadata` to something other than a plain object. Never throws.
 * @internal
 */
export function withPacketMetadata<P>(client: object, packet: P): P {
  try {
    if (!isRecordObject(packet) || carriageOf(client) !== 'metadata') return packet;
    const out = packet as unknown as PacketLike;
    if (isEnvelope(out.data)) return packet;
    const own = out.metadata;
    if (own !== undefined && own !== null && !isRecordObject(own)) return packet;
    const headers = currentHeaders();
    if (headers === undefined) return packet;
    out.metadata = own === undefined || own === null ? headers : { ...headers, ...own };
  } catch {
    // Propagation never breaks a send.
  }
  return packet;
}

/** Returns gRPC call arguments whose metadata (argument 1) carries the active context. @internal */
export function withGrpcContext(args: unknown[]): unknown[] {
  try {
    const headers = currentHeaders();
    if (headers === undefined || args.length === 0) return args;
    const given = args[1];
    const isMetadata =
      given !== null && typeof given === 'object' && typeof (given as GrpcMetadataLike).getMap === 'function' && typeof (given as GrpcMetadataLike).clone === 'function';
    let metadata: GrpcMetadataLike;
    if (isMetadata) {
      metadata = (given as GrpcMetadataLike).clone();
    } else if (loaded.GrpcMetadata !== undefined) {
      metadata = new loaded.GrpcMetadata();
    } else {
      return args;
    }
    for (const name in headers) if (metadata.get(name).length === 0) metadata.set(name, headers[name] as string);
    const out = args.slice();
    if (isMetadata) out[1] = metadata;
    else out.splice(1, 0, metadata);
    return out;
  } catch {
    return args;
  }
}

type SendLike = (this: ClientProxy, pattern: unknown, data: unknown) => Observable<unknown>;
type CreatePacketLike = (this: ClientProxy, pattern: unknown, data: unknown) => unknown;
type ServiceMethodFactory = (this: ClientGrpcProxy, client: unknown, methodName: string) => (...args: unknown[]) => unknown;

const ORIGINAL = Symbol.for('nestjs-context:microservices-original');
type Patched<F> = F & { [ORIGINAL]?: F };

/** Runs `fn` inside `record`, or outside any context when `record` is `undefined`. */
function enter<R>(record: ContextRecord | undefined, fn: () => R): R {
  return record === undefined ? storage.exit(fn) : storage.run(record, fn);
}

/**
 * Makes an Observable a client returned subscribe inside the context of the `send()`/`emit()` call
 * (`record`, or no context when there was none) and re-enter it for every `next`, `error` and
 * `complete`. The transport emits replies from its socket's callbacks, which carry whatever context
 * was active when the socket was created; without this, `map`/`tap`/`subscribe` callbacks of one
 * request would run in another request's context. Under packet metadata (NestJS 12) this also makes
 * the packet, built only on subscription, carry the context of the `send()` call.
 */
function bindToCaller(source: Observable<unknown>, record: ContextRecord | undefined): Observable<unknown> {
  return new Observable<unknown>((subscriber) =>
    enter(record, () =>
      source.subscribe({
        next: (value) => enter(record, () => subscriber.next(value)),
        error: (error: unknown) => enter(record, () => subscriber.error(error)),
        complete: () => enter(record, () => subscriber.complete()),
      }),
    ),
  );
}

/**
 * `send`/`emit` carrying the context: the payload gets the context's headers (or, under packet
 * metadata, `createPacket` adds them) and the returned Observable is bound to the caller's context
 * (see {@link bindToCaller}).
 */
function wrapSend(original: SendLike, prepare: (client: object, data: unknown) => unknown = withOutboundContext): SendLike {
  const wrapped: Patched<SendLike> = function (this: ClientProxy, pattern, data) {
    const record = storage.getStore();
    const out = original.call(this, pattern, prepare(this, data));
    return isObservable(out) ? bindToCaller(out, record) : out;
  };
  wrapped[ORIGINAL] = original;
  return wrapped;
}

/** `ClientKafka#emitBatch(pattern, { messages })`: each message carries the context, with its own parent id. */
function wrapEmitBatch(original: SendLike): SendLike {
  return wrapSend(original, (client, data) => {
    try {
      return withKafkaBatch(data, (message) => withOutboundContext(client, message));
    } catch {
      return data;
    }
  });
}

type ConnectLike = (this: ClientProxy, ...args: unknown[]) => unknown;

/**
 * `connect` outside any context: sockets and broker connections the client creates then never
 * capture (nor retain) the request that happened to connect first.
 */
function wrapConnect(original: ConnectLike): ConnectLike {
  const wrapped: Patched<ConnectLike> = function (this: ClientProxy, ...args) {
    return storage.getStore() === undefined ? original.apply(this, args) : storage.exit(() => original.apply(this, args));
  };
  wrapped[ORIGINAL] = original;
  return wrapped;
}

function wrapCreatePacket(original: CreatePacketLike): CreatePacketLike {
  const wrapped: Patched<CreatePacketLike> = function (this: ClientProxy, pattern, data) {
    // The user's own dispatch hook runs inside the original; the context goes in underneath its metadata.
    return withPacketMetadata(this, original.call(this, pattern, data));
  };
  wrapped[ORIGINAL] = original;
  return wrapped;
}

function wrapServiceMethodFactory(original: ServiceMethodFactory): ServiceMethodFactory {
  const wrapped: Patched<ServiceMethodFactory> = function (this: ClientGrpcProxy, client, methodName) {
    const method = original.call(this, client, methodName);
    return (...args: unknown[]) => method(...withGrpcContext(args));
  };
  wrapped[ORIGINAL] = original;
  return wrapped;
}

type Target = Record<string, unknown>;

/** Patches `connect` on one client class's prototype (where the class defines one). */
function patchConnect(type: unknown): () => void {
  const proto = typeof type === 'function' ? (type as { prototype?: Target }).prototype : undefined;
  if (proto === undefined || !Object.prototype.hasOwnProperty.call(proto, 'connect')) return () => undefined;
  return patch<ConnectLike>(proto, 'connect', wrapConnect);
}

function patch<F>(target: Target, key: string, wrap: (original: F) => F): () => void {
  const current = target[key] as Patched<F> | undefined;
  if (typeof current !== 'function' || current[ORIGINAL] !== undefined) return () => undefined;
  const had = Object.prototype.hasOwnProperty.call(target, key);
  const wrapped = wrap(current);
  target[key] = wrapped;
  return () => {
    if (target[key] !== wrapped) return;
    if (had) target[key] = current;
    else delete target[key];
  };
}

/**
 * Patches one client instance's own method, even when it inherits a patched one from the prototype
 * (so the instance keeps carrying the context after a global install is removed): it then wraps the
 * prototype patch's original, so the context is never added twice. Does nothing when the instance
 * already has its own patched method.
 */
function patchInstance<F>(target: Target, key: string, wrap: (original: F) => F): void {
  const current = target[key] as Patched<F> | undefined;
  if (typeof current !== 'function') return;
  if (Object.prototype.hasOwnProperty.call(target, key) && current[ORIGINAL] !== undefined) return;
  target[key] = wrap(current[ORIGINAL] ?? current);
}

/** The client classes whose `connect` runs outside any context (those Nest has, by name). */
const CONNECTING_CLIENTS: readonly unknown[] = [ClientTCP, ClientRedis, ClientNats, ClientRMQ, ClientMqtt, ClientKafka];

/**
 * Patches `ClientProxy` (send/emit, and `createPacket` where Nest has it, so a user's own
 * `setOnDispatchHook` cannot replace the context's packet metadata), `ClientKafka#emitBatch` and
 * `ClientGrpcProxy` (service methods) globally. @internal
 */
export function patchClients(): () => void {
  const proxy = ClientProxy.prototype as unknown as Target;
  const grpc = ClientGrpcProxy.prototype as unknown as Target;
  const undo = [
    patch<SendLike>(proxy, 'send', wrapSend),
    patch<SendLike>(proxy, 'emit', wrapSend),
    patch<CreatePacketLike>(proxy, 'createPacket', wrapCreatePacket),
    patch<SendLike>(ClientKafka.prototype as unknown as Target, 'emitBatch', wrapEmitBatch),
    ...CONNECTING_CLIENTS.map((type) => patchConnect(type)),
    patch<ServiceMethodFactory>(grpc, 'createUnaryServiceMethod', wrapServiceMethodFactory),
    patch<ServiceMethodFactory>(grpc, 'createStreamServiceMethod', wrapServiceMethodFactory),
  ];
  return () => undo.forEach((fn) => fn());
}

/** Options of {@link propagateContext}. */
export interface ClientPropagationOptions {
  /**
   * Send this client's TCP/Redis messages in the payload envelope even where the installed Nest
   * has packet metadata — for a NestJS 12 sender whose receiver runs NestJS 11 (which drops
   * `packet.metadata`). Default `false`. Other transports are not affected.
   */
  forceEnvelope?: boolean;
}

/**
 * What {@link propagateContext} accepts besides a `ClientGrpcProxy`: any Nest client with `send` and
 * `emit` — `ClientProxyFactory.create()`'s result or a concrete class such as `ClientRMQ`,
 * `ClientKafka`, `ClientTCP` (whose typed events make them no `ClientProxy` of the default type).
 */
export interface MessageClientLike {
  /** `ClientProxy#send`. */
  send(pattern: never, data: never): unknown;
  /** `ClientProxy#emit`. */
  emit(pattern: never, data: never): unknown;
}

/**
 * Makes one client carry the context on every `send`/`emit` (or, for a gRPC client, on every
 * service method obtained afterwards through `getService`, and for a Kafka client on every message
 * of `emitBatch`) — for apps that prefer not to install propagation globally. Idempotent; returns the same client. NATS headers and gRPC metadata need
 * their library, loaded in the background: until it is, NATS messages use the envelope. On NestJS 12
 * TCP and Redis clients carry it in `packet.metadata` (see {@link ClientPropagationOptions.forceEnvelope}).
 *
 * @example
 * const billing = propagateContext(ClientProxyFactory.create({ transport: Transport.TCP, options }));
 */
export function propagateContext<C extends MessageClientLike | ClientGrpcProxy>(client: C, options?: ClientPropagationOptions): C {
  const forceEnvelope = checkForceEnvelope(options, 'propagateContext()');
  void loadOptionalDeps();
  const target = client as unknown as Target;
  if (client instanceof ClientGrpcProxy) {
    patchInstance<ServiceMethodFactory>(target, 'createUnaryServiceMethod', wrapServiceMethodFactory);
    patchInstance<ServiceMethodFactory>(target, 'createStreamServiceMethod', wrapServiceMethodFactory);
  } else {
    if (forceEnvelope) Object.defineProperty(target, FORCE_ENVELOPE, { value: true, configurable: true });
    patchInstance<SendLike>(target, 'send', wrapSend);
    patchInstance<SendLike>(target, 'emit', wrapSend);
    patchInstance<CreatePacketLike>(target, 'createPacket', wrapCreatePacket);
    patchInstance<ConnectLike>(target, 'connect', wrapConnect);
    if (client instanceof ClientKafka) patchInstance<SendLike>(target, 'emitBatch', wrapEmitBatch);
  }
  return client;
}

/**
 * Checks an options object whose only option is `forceEnvelope`; returns its value (default
 * `false`). Throws `ContextConfigError` for anything else, unknown keys included (a misspelt
 * option would otherwise silently leave a mixed fleet without context). @internal
 */
export function checkForceEnvelope(options: unknown, caller: string): boolean {
  if (options === undefined || options === null) return false;
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw ContextConfigError.create(`${caller}: the options must be an object, got ${describe(options)}`, 'Pass { forceEnvelope: true } or leave them out.');
  }
  for (const key of Object.keys(options)) {
    if (key !== 'forceEnvelope') {
      throw ContextConfigError.create(`${caller}: unknown option ${JSON.stringify(key)}`, 'The only option is forceEnvelope (true or false).');
    }
  }
  const value = (options as { forceEnvelope?: unknown }).forceEnvelope;
  if (value === undefined) return false;
  if (typeof value !== 'boolean') {
    throw ContextConfigError.create(`${caller}: option forceEnvelope must be true or false, got ${describe(value)}`, 'Leave it out for false.');
  }
  return value;
}
