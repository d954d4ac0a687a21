import {
  ClientGrpcProxy,
  ClientMqtt,
  ClientNats,
  ClientProxy,
  ClientRedis,
  ClientRMQ,
  ClientTCP,
  MqttRecord,
  NatsRecord,
  RmqRecord,
} from '@nestjs/microservices';
import type { Observable } from 'rxjs';
import { storage } from '../../context.storage.js';
import { isEnvelope, wrapEnvelope } from './envelope.js';
import { loaded, loadOptionalDeps, type GrpcMetadataLike, type NatsHeadersLike } from './optional-deps.js';

/** How the context travels on one client. @internal */
type Carriage = 'rmq' | 'nats' | 'mqtt' | 'envelope' | 'none';

function carriageOf(client: object): Carriage {
  if (client instanceof ClientRMQ) return 'rmq';
  if (client instanceof ClientNats) return 'nats';
  if (client instanceof ClientMqtt) {
    const options = (client as unknown as { options?: { protocolVersion?: number } }).options;
    return options?.protocolVersion === 5 ? 'mqtt' : 'envelope';
  }
  if (client instanceof ClientTCP || client instanceof ClientRedis) return 'envelope';
  return 'none';
}

/** Headers of the active context for one outgoing message, or `undefined` outside a context. */
function currentHeaders(): Record<string, string> | undefined {
  const record = storage.getStore();
  if (record === undefined) return undefined;
  const headers = record.outboundHeaders();
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
      if (own === undefined || typeof own.set !== 'function') return undefined;
      for (const name in headers) if (!own.has(name)) own.set(name, headers[name] as string);
      return data;
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
 * properties), else the fallback envelope. Headers the caller set on a record win. Outside a
 * context, or for a client it does not know, returns `data` unchanged. Never throws.
 * @internal
 */
export function withOutboundContext(client: object, data: unknown): unknown {
  try {
    // Nest rejects a nil payload itself (InvalidMessageException); keep it that way.
    if (data === undefined || data === null) return data;
    const carriage = carriageOf(client);
    if (carriage === 'none' || isEnvelope(data)) return data;
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
      case 'envelope':
        return wrapEnvelope(data, headers);
    }
  } catch {
    return data;
  }
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
type ServiceMethodFactory = (this: ClientGrpcProxy, client: unknown, methodName: string) => (...args: unknown[]) => unknown;

const ORIGINAL = Symbol.for('nestjs-context:microservices-original');
type Patched<F> = F & { [ORIGINAL]?: F };

function wrapSend(original: SendLike): SendLike {
  const wrapped: Patched<SendLike> = function (this: ClientProxy, pattern, data) {
    return original.call(this, pattern, withOutboundContext(this, data));
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

/** Patches `ClientProxy` (send/emit) and `ClientGrpcProxy` (service methods) globally. @internal */
export function patchClients(): () => void {
  const proxy = ClientProxy.prototype as unknown as Target;
  const grpc = ClientGrpcProxy.prototype as unknown as Target;
  const undo = [
    patch<SendLike>(proxy, 'send', wrapSend),
    patch<SendLike>(proxy, 'emit', wrapSend),
    patch<ServiceMethodFactory>(grpc, 'createUnaryServiceMethod', wrapServiceMethodFactory),
    patch<ServiceMethodFactory>(grpc, 'createStreamServiceMethod', wrapServiceMethodFactory),
  ];
  return () => undo.forEach((fn) => fn());
}

/**
 * Makes one client carry the context on every `send`/`emit` (or, for a gRPC client, on every
 * service method obtained afterwards through `getService`) — for apps that prefer not to install
 * propagation globally. Idempotent; returns the same client. NATS headers and gRPC metadata need
 * their library, loaded in the background: until it is, NATS messages use the envelope.
 *
 * @example
 * const billing = propagateClientContext(ClientProxyFactory.create({ transport: Transport.TCP, options }));
 */
export function propagateClientContext<C extends ClientProxy | ClientGrpcProxy>(client: C): C {
  void loadOptionalDeps();
  const target = client as unknown as Target;
  if (client instanceof ClientGrpcProxy) {
    patch<ServiceMethodFactory>(target, 'createUnaryServiceMethod', wrapServiceMethodFactory);
    patch<ServiceMethodFactory>(target, 'createStreamServiceMethod', wrapServiceMethodFactory);
  } else {
    patch<SendLike>(target, 'send', wrapSend);
    patch<SendLike>(target, 'emit', wrapSend);
  }
  return client;
}
