import { collectCarrier, type Carrier, type Lookup } from '../../propagation/carrier.js';
import { kafkaHeaderLookup } from './kafka.js';

/**
 * Where the server-side wrapper leaves the headers it unwrapped from a fallback envelope: on the
 * transport's per-message context object (`TcpContext`, `RedisContext`, ...), under a symbol.
 * Registered globally so the ESM and CommonJS builds agree. @internal
 */
export const ENVELOPE_CARRIER = Symbol.for('nestjs-context:rpc-envelope-carrier');

interface MetadataLike {
  get(name: string): unknown;
  getMap(): unknown;
}

function isObject(value: unknown): value is Record<PropertyKey, unknown> {
  return value !== null && typeof value === 'object';
}

function isMetadataLike(value: unknown): value is MetadataLike {
  return isObject(value) && typeof value.get === 'function' && typeof value.getMap === 'function';
}

/** Reads an own, non-prototype property of a plain record (never `__proto__` tricks). */
function ownValue(source: unknown): ((name: string) => unknown) | undefined {
  if (!isObject(source)) return undefined;
  return (name) => (Object.prototype.hasOwnProperty.call(source, name) ? source[name] : undefined);
}

function callMethod(target: Record<PropertyKey, unknown>, method: string): unknown {
  const fn = target[method];
  return typeof fn === 'function' ? (fn as () => unknown).call(target) : undefined;
}

/**
 * NestJS 12 packet metadata: `TcpContext#getMetadata()` / `RedisContext#getMetadata()` return the
 * packet's `metadata` record (or `undefined`). Only an object is read, own string values only; a method
 * that throws counts as no metadata (an envelope on the same message is still read).
 */
function packetMetadata(transport: Record<PropertyKey, unknown>): Lookup | undefined {
  if (typeof transport.getMetadata !== 'function') return undefined;
  let metadata: unknown;
  try {
    metadata = callMethod(transport, 'getMetadata');
  } catch {
    return undefined;
  }
  const own = Array.isArray(metadata) ? undefined : ownValue(metadata);
  if (own === undefined) return undefined;
  // `PacketMetadata` is `Record<string, string>`: anything else (arrays included) is malformed.
  return (name) => {
    const value = own(name);
    return typeof value === 'string' ? value : undefined;
  };
}

/**
 * Picks where this message's metadata lives, by the shape of Nest's transport context; returns
 * the sources in priority order (a header is taken from the first source with a usable value).
 */
function lookupsFor(data: unknown, transport: unknown): Lookup[] {
  // gRPC stream pass-through handlers get the call itself first (and a callback second).
  if (!isObject(transport)) {
    if (isObject(data) && isMetadataLike(data.metadata)) {
      const metadata = data.metadata;
      return [(name) => metadata.get(name)];
    }
    return [];
  }
  // TCP / Redis: NestJS 12 packet metadata first (where a user's own dispatch-hook values win),
  // then the fallback envelope (NestJS 11 senders, `forceEnvelope`, non-Nest producers).
  const metadata = packetMetadata(transport);
  const carried = (transport as { [ENVELOPE_CARRIER]?: unknown })[ENVELOPE_CARRIER];
  const envelope = carried === undefined ? undefined : ownValue(carried);
  if (metadata !== undefined || carried !== undefined) {
    return [metadata, envelope].filter((lookup): lookup is Lookup => lookup !== undefined);
  }
  // gRPC: the second handler argument is the call's Metadata.
  if (isMetadataLike(transport)) return [(name) => transport.get(name)];
  // NATS: NatsContext#getHeaders() returns the message's MsgHdrs (or undefined).
  if (typeof transport.getHeaders === 'function') {
    const headers = callMethod(transport, 'getHeaders');
    if (!isObject(headers) || typeof headers.get !== 'function') return [];
    const get = headers.get as (name: string) => unknown;
    // MsgHdrs#get gives the first value of a repeated header, #values all of them.
    const values = typeof headers.values === 'function' ? (headers.values as (name: string) => unknown) : undefined;
    return [(name, all) => (all && values !== undefined ? values.call(headers, name) : get.call(headers, name))];
  }
  // MQTT 5: MqttContext#getPacket().properties.userProperties.
  if (typeof transport.getPacket === 'function') {
    const packet = callMethod(transport, 'getPacket');
    const properties = isObject(packet) ? packet.properties : undefined;
    const lookup = ownValue(isObject(properties) ? properties.userProperties : undefined);
    return lookup === undefined ? [] : [lookup];
  }
  // Kafka: KafkaContext#getMessage().headers (Buffers or strings, arrays of them when repeated).
  const kafka = kafkaHeaderLookup(transport);
  if (kafka !== undefined) return [kafka];
  // RabbitMQ: RmqContext#getMessage().properties.headers.
  if (typeof transport.getMessage === 'function' && typeof transport.getChannelRef === 'function') {
    const message = callMethod(transport, 'getMessage');
    const properties = isObject(message) ? message.properties : undefined;
    const lookup = ownValue(isObject(properties) ? properties.headers : undefined);
    return lookup === undefined ? [] : [lookup];
  }
  return [];
}

/**
 * Reads the propagation headers `names` of one inbound message from its payload and transport
 * context into a fresh, prototype-free carrier: the transport's own headers, NestJS 12 packet
 * metadata or the fallback envelope (for TCP/Redis, packet metadata before envelope).
 * A header takes the first usable value over those sources — except the correlation id headers
 * `ids`, which keep every usable value in that order (an array when there are several, at most 16),
 * so that the first one that passes validation wins, not merely the first one present.
 * Values of the wrong type, empty or longer than 8192 characters are dropped; nothing here throws.
 * Returns `undefined` when the message carries none.
 * @internal
 */
export function extractCarrier(
  data: unknown,
  transport: unknown,
  names: readonly string[],
  ids?: ReadonlySet<string>,
): Carrier | undefined {
  let lookups: Lookup[];
  try {
    lookups = lookupsFor(data, transport);
  } catch {
    return undefined;
  }
  return collectCarrier(lookups, names, ids ?? new Set());
}
