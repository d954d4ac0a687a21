import { Buffer } from 'node:buffer';

/**
 * The one propagation contract. Every entry reads inbound propagation data through a getter over its
 * own carrier (HTTP headers, message metadata, job options, whatever a user's consumer holds) and
 * every client writes outbound data through a setter: {@link collectCarrier} turns lookups into the
 * one normalized inbound form the record reads, and `inject.ts` writes a record's outbound fields.
 */

/**
 * Reads propagation fields from a carrier of your own: an SQS message's attributes, a kafkajs
 * message's headers, a Lambda event's headers. Used by `contextService.run(fn, { headers, getter })`.
 *
 * @example
 * const sqsGetter: CarrierGetter<Record<string, { StringValue?: string }>> = {
 *   get: (attributes, name) => attributes[name]?.StringValue,
 * };
 */
export interface CarrierGetter<C> {
  /**
   * The value of the field `name` (a lower-case header name: `traceparent`, `tracestate`,
   * `baggage` or one of the app's correlation id headers) in `carrier`: a string, a list of
   * strings for a repeated field, a `Buffer`/`Uint8Array` (read as UTF-8), or `undefined`.
   * Anything else counts as absent, and so does a field whose lookup throws.
   */
  get(carrier: C, name: string): unknown;
}

/**
 * Writes propagation fields into an outgoing carrier of your own (message attributes, record
 * headers). Used by `contextService.inject(carrier, setter)`.
 *
 * @example
 * const sqsSetter: CarrierSetter<Record<string, { DataType: string; StringValue: string }>> = {
 *   set: (attributes, name, value) => { attributes[name] = { DataType: 'String', StringValue: value }; },
 * };
 */
export interface CarrierSetter<C> {
  /** Writes the field `name` (lower-case) with `value` (header-safe ASCII) into `carrier`. */
  set(carrier: C, name: string, value: string): void;
}

/**
 * The normalized inbound form every entry hands to the record: lower-case names, one string per
 * header, except the correlation id headers, which may hold every candidate in priority order.
 * Node's `IncomingHttpHeaders` already has this shape. @internal
 */
export type Carrier = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Reads one field of one inbound source; `all`: every value of a repeated field, where the source can tell. @internal */
export type Lookup = (name: string, all: boolean) => unknown;

/** Longest single value read; longer ones are ignored (a baggage header is capped at 8192 bytes). */
const MAX_VALUE_LENGTH = 8192;

/** Most candidates kept for one correlation id header, over all sources and repeated values. */
const MAX_CANDIDATES = 16;

/** The W3C fields every entry reads besides the correlation id headers. @internal */
export const TRACE_FIELDS: readonly string[] = Object.freeze(['traceparent', 'tracestate', 'baggage']);

function isUsable(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_VALUE_LENGTH;
}

/** One value as a usable header string (the first of a repeated one), or `undefined` (wrong type, empty, too long). */
function asHeader(value: unknown): string | undefined {
  const first = Array.isArray(value) ? (value as unknown[])[0] : value;
  return isUsable(first) ? first : undefined;
}

/** Appends the usable values of one value (each of a repeated one, in order) to `out`, up to {@link MAX_CANDIDATES}. */
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
 * Reads the fields `names` over `lookups` (sources in priority order) into a fresh, prototype-free
 * carrier. A field takes the first usable value over the sources — except the correlation id
 * fields `ids`, which keep every usable value in source order (an array when there are several, at
 * most 16), so that the first one that passes validation wins, not merely the first one present.
 * Values of the wrong type, empty or longer than 8192 characters are dropped; a lookup that throws
 * counts as absent; nothing here throws. Returns `undefined` when no field is present.
 * @internal
 */
export function collectCarrier(lookups: readonly Lookup[], names: readonly string[], ids: ReadonlySet<string>): Carrier | undefined {
  if (lookups.length === 0) return undefined;
  const carrier = Object.create(null) as Record<string, string | readonly string[]>;
  let found = false;
  for (const name of names) {
    if (ids.has(name)) {
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

/** Bytes as UTF-8 text (too long ones are dropped before decoding); anything else as it is. */
function decoded(value: unknown): unknown {
  if (value instanceof Uint8Array) {
    return value.byteLength > MAX_VALUE_LENGTH ? undefined : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
  }
  if (Array.isArray(value)) return (value as unknown[]).slice(0, MAX_CANDIDATES).map((item) => (item instanceof Uint8Array ? decoded(item) : item));
  return value;
}

/** A lookup over a user's carrier and getter: bytes are read as UTF-8. @internal */
export function getterLookup<C>(carrier: C, getter: CarrierGetter<C>): Lookup {
  return (name) => decoded(getter.get(carrier, name));
}

/**
 * The default getter: fetch's `Headers` (and a `Map`) through `get()`; otherwise own properties of a
 * plain header map (`event.headers`, kafkajs `headers`), the exact lower-case name first, else the
 * first key equal to it ignoring case (API Gateway keeps the client's spelling). Never reads
 * inherited properties.
 * @internal
 */
export const headerMapGetter: CarrierGetter<unknown> = {
  get(carrier, name) {
    if (carrier === null || typeof carrier !== 'object') return undefined;
    if (carrier instanceof Headers || carrier instanceof Map) return carrier.get(name) ?? undefined;
    if (Object.prototype.hasOwnProperty.call(carrier, name)) return (carrier as Record<string, unknown>)[name];
    for (const key of Object.keys(carrier)) {
      if (key.length === name.length && key.toLowerCase() === name) return (carrier as Record<string, unknown>)[key];
    }
    return undefined;
  },
};

interface HeaderBag {
  has(name: string): boolean;
  set(name: string, value: string): unknown;
}

function isHeaderBag(value: unknown): value is HeaderBag {
  return typeof (value as Partial<HeaderBag>).has === 'function' && typeof (value as Partial<HeaderBag>).set === 'function';
}

/**
 * The default setter: for an object with `has`/`set` methods (fetch's `Headers`, a `Map`, axios'
 * `AxiosHeaders`) through them, else as own properties of a plain object. Either way a field the
 * carrier already holds (for a plain object: under any spelling) is kept: what the caller set wins.
 * @internal
 */
export const headerMapSetter: CarrierSetter<unknown> = {
  set(carrier, name, value) {
    if (carrier === null || typeof carrier !== 'object') return;
    if (isHeaderBag(carrier)) {
      if (!carrier.has(name)) carrier.set(name, value);
      return;
    }
    const bag = carrier as Record<string, unknown>;
    if (Object.prototype.hasOwnProperty.call(bag, name)) return;
    for (const key of Object.keys(bag)) if (key.length === name.length && key.toLowerCase() === name) return;
    bag[name] = value;
  },
};
