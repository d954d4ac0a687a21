import type { Carrier } from '../../record/context-record.js';
import { kafkaHeaderLookup } from './kafka.js';

/**
 * Where the server-side wrapper leaves the headers it unwrapped from a fallback envelope: on the
 * transport's per-message context object (`TcpContext`, `RedisContext`, ...), under a symbol.
 * Registered globally so the ESM and CommonJS builds agree. @internal
 */
export const ENVELOPE_CARRIER = Symbol.for('nestjs-context:rpc-envelope-carrier');

/** Longest single metadata value read; longer ones are ignored (a baggage header is capped at 8192 bytes). */
const MAX_VALUE_LENGTH = 8192;

/** Most candidates kept for one correlation id header, over all sources and repeated values. */
const MAX_CANDIDATES = 16;

/** Reads one header of a message's metadata source; `all`: every value of a repeated header, where the source can tell. */
type Lookup = (name: string, all: boolean) => unknown;

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

function isUsable(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_VALUE_LENGTH;
}

/** One metadata value as a usable header string (the first of a repeated one), or `undefined` (wrong type, empty, too long). */
function asHeader(value: unknown): string | undefined {
  const first = Array.isArray(value) ? (value as unknown[])[0] : value;
  return isUsable(first) ? first : undefined;
}

/** Appends the usable values of one metadata value (each of a repeated one, in order) to `out`, up to {@link MAX_CANDIDATES}. */
function addCandidates(value: unknown, out: string[]): void {
  if (!Array.isArray(value)) {
    if (isUsable(value)) out.push(value);
    return;
  }
  const n = Math.min(value.length, MAX_CANDIDATES);
  for (let i = 0; i < n && out.length < MAX_CANDIDATES; i++) {
    const item: unknown = value[i];
    if (isUsable(item)) out.push(item);
  }
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
  if (lookups.length === 0) return undefined;
  const carrier: Record<string, string | readonly string[]> = Object.create(null) as Record<string, string | readonly string[]>;
  let found = false;
  for (const name of names) {
    if (ids?.has(name) === true) {
      const candidates: string[] = [];
      for (const lookup of lookups) {
        try {
          addCandidates(lookup(name, true), candidates);
        } catch {
          // A source that throws has no candidates; the others still count.
        }
      }
      if (candidates.length > 0) {
        carrier[name] = candidates.length === 1 ? (candidates[0] as string) : candidates;
        found = true;
      }
      continue;
    }
    let value: string | undefined;
    for (const lookup of lookups) {
      try {
        value = asHeader(lookup(name, false));
      } catch {
        value = undefined;
      }
      if (value !== undefined) break;
    }
    if (value !== undefined) {
      carrier[name] = value;
      found = true;
    }
  }
  return found ? carrier : undefined;
}
