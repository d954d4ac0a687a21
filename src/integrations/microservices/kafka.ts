import { KafkaRequestSerializer } from '@nestjs/microservices/serializers/kafka-request.serializer.js';

/*
 * Nest's Kafka transport (`ClientKafka` / `ServerKafka`, on kafkajs): the context travels in the
 * Kafka message's own headers, next to Nest's `kafka_*` headers (`kafka_correlationId`,
 * `kafka_replyTopic`, ...), under the same names as over HTTP (`traceparent`, `tracestate`,
 * `baggage`, the correlation id header).
 */

/** Reads one header; `all`: every value of a repeated header. Same shape as the extractor's lookups. */
type HeaderLookup = (name: string, all: boolean) => unknown;

/** Longest header value read, in characters (as for every other transport). */
const MAX_VALUE_LENGTH = 8192;
/** A UTF-8 Buffer longer than this cannot decode to {@link MAX_VALUE_LENGTH} characters or fewer. */
const MAX_VALUE_BYTES = 3 * MAX_VALUE_LENGTH;
/** Most values read of one repeated header. */
const MAX_REPEATED = 16;

/** Strict UTF-8: invalid bytes make the value malformed instead of turning into U+FFFD; a BOM is kept (and so rejected later). */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function isObject(value: unknown): value is Record<PropertyKey, unknown> {
  return value !== null && typeof value === 'object';
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (!isObject(value) || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * One Kafka header value as text: a string as it is, a Buffer decoded as strict UTF-8 (kafkajs
 * delivers Buffers; Nest's parser decodes them, except those starting with a zero byte), anything
 * else — null, numbers, the objects and arrays Nest's parser makes of header values that look like
 * JSON, invalid UTF-8, oversize Buffers — `undefined` (malformed).
 */
function headerText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (!Buffer.isBuffer(value) || value.length > MAX_VALUE_BYTES) return undefined;
  try {
    return utf8.decode(value);
  } catch {
    return undefined;
  }
}

/**
 * The header lookup of a Kafka message handler's `KafkaContext` (recognised by its shape:
 * `getMessage()`, `getTopic()`, `getPartition()`), or `undefined` for any other transport context.
 * Reads own keys of `getMessage().headers` only, each value decoded by {@link headerText}. A
 * repeated header as kafkajs delivers it (an array of Buffers) gives its values in order. Any other
 * array is malformed: through Nest's parser an array can only come from a header whose text looks
 * like a JSON array (`["a","b"]`), which is one invalid value, not several. The caller guards
 * against anything that throws. @internal
 */
export function kafkaHeaderLookup(transport: Record<PropertyKey, unknown>): HeaderLookup | undefined {
  if (typeof transport.getMessage !== 'function' || typeof transport.getTopic !== 'function' || typeof transport.getPartition !== 'function') {
    return undefined;
  }
  const message: unknown = (transport.getMessage as () => unknown).call(transport);
  const headers = isObject(message) ? message.headers : undefined;
  if (!isObject(headers) || Array.isArray(headers)) return () => undefined;
  return (name) => {
    if (!Object.prototype.hasOwnProperty.call(headers, name)) return undefined;
    const value = headers[name];
    if (!Array.isArray(value)) return headerText(value);
    const items = (value as unknown[]).slice(0, MAX_REPEATED);
    if (!items.every((item) => item === null || Buffer.isBuffer(item))) return undefined;
    return items.map(headerText);
  };
}

/**
 * Whether `ClientKafka` treats `data` as a Kafka message `{ key?, value, headers?, partition? }`
 * rather than a bare payload (the same test as Nest's `KafkaRequestSerializer`).
 */
function isKafkaMessage(data: unknown): data is Record<string, unknown> {
  return isObject(data) && ('key' in data || 'value' in data);
}

/**
 * The payload to hand to `ClientKafka#send/emit` (or one message of `emitBatch`) so the Kafka
 * message carries `headers`:
 * - a Kafka message (plain object with `key` or `value`) is copied with `headers` merged under its
 *   own headers (the caller's win; the caller's object is never changed);
 * - a bare payload becomes `{ value: payload, headers }` — what Nest's own serializer would have
 *   made of it — when the client uses Nest's `KafkaRequestSerializer`; a custom serializer gets
 *   the payload untouched (it may not expect a message object), so the context is not carried;
 * - anything else (a message that is a class instance, or whose `headers` is not a plain object)
 *   is returned unchanged.
 * @internal
 */
export function withKafkaHeaders(client: object, data: unknown, headers: Record<string, string>): unknown {
  if (isKafkaMessage(data)) {
    if (!isPlainObject(data)) return data;
    const own = data.headers;
    if (own === undefined || own === null) return { ...data, headers };
    return isPlainObject(own) ? { ...data, headers: { ...headers, ...own } } : data;
  }
  const serializer = (client as { serializer?: unknown }).serializer;
  return serializer instanceof KafkaRequestSerializer ? { value: data, headers } : data;
}

/**
 * The `data` of `ClientKafka#emitBatch(pattern, { messages })` with every message passed through
 * `each` (each message gets its own headers, so its own parent id). Anything that is not a plain
 * object with a `messages` array is returned unchanged (Nest reports it). @internal
 */
export function withKafkaBatch(data: unknown, each: (message: unknown) => unknown): unknown {
  if (!isPlainObject(data) || !Array.isArray(data.messages)) return data;
  return { ...data, messages: (data.messages as unknown[]).map(each) };
}
