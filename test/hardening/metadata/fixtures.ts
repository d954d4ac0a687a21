import 'reflect-metadata';
import { Controller, Module, type Type } from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import fc from 'fast-check';
import { ContextModule, ContextService, currentContext } from '../../../src/index.js';
import { ContextMicroservicesModule } from '../../../src/integrations/microservices/index.js';
import { isValidCorrelationId, readCorrelationId } from '../../../src/propagation/correlation-id.js';
import { EventLog, serverContextOptions, TransportContext } from '../../transports/fixtures/harness.js';
import { DEFAULT_ID } from '../../utils/ids.js';

/*
 * Shared pieces of the hostile-metadata property tests: arbitraries for hostile header maps, the
 * oracle for the correlation id a handler must see, and watchers for crashes and prototype pollution.
 */

/** The app's correlation id headers (the default `requestHeaders`), in priority order. */
export const ID_NAMES = ['x-request-id', 'x-correlation-id'] as const;
export const TRACE_NAMES = ['traceparent', 'tracestate', 'baggage'] as const;
/** A fresh id of the default generator (a UUIDv7). */
export const FRESH = DEFAULT_ID;
/** A valid id that is only ever sent under a `__proto__` / `constructor.prototype` key: no handler may see it. */
export const PROTO_ID = 'proto-evil-id';
/** The extractor reads at most this many characters of one value (longer ones are dropped). */
const MAX_VALUE_LENGTH = 8192;
const MAX_CANDIDATES = 16;

// ---------------------------------------------------------------- crashes and pollution

/**
 * Jest gives the test a copy of `process` whose listeners never fire; its global error handlers sit
 * on the real one. `setTimeout` is the outer realm's, so its `Function` constructor returns the
 * real `process`.
 */
const realProcess = (setTimeout.constructor as FunctionConstructor)('return process')() as NodeJS.Process;

/** Records unhandled rejections and uncaught exceptions on the real process until `stop()`. */
export function watchProcess(): { errors: unknown[]; stop(): void } {
  const errors: unknown[] = [];
  const onRejection = (reason: unknown) => errors.push(['unhandledRejection', reason]);
  const onException = (error: unknown) => errors.push(['uncaughtException', error]);
  realProcess.on('unhandledRejection', onRejection);
  realProcess.on('uncaughtException', onException);
  return {
    errors,
    stop() {
      realProcess.off('unhandledRejection', onRejection);
      realProcess.off('uncaughtException', onException);
    },
  };
}

const PROTOTYPES: Array<[string, object]> = [
  ['Object.prototype', Object.prototype],
  ['Array.prototype', Array.prototype],
  ['Function.prototype', Function.prototype],
  ['String.prototype', String.prototype],
];

/** The own keys of the built-in prototypes (of the test's realm, where the library runs too). */
export function prototypeKeys(): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [name, proto] of PROTOTYPES) out[name] = Reflect.ownKeys(proto).map(String).sort();
  return out;
}

/** Fails when a built-in prototype gained or lost a key, or when a plain object inherits `polluted`. */
export function expectNoPollution(before: Record<string, string[]>): void {
  expect(prototypeKeys()).toEqual(before);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(([] as unknown as Record<string, unknown>).polluted).toBeUndefined();
  expect((Object.create(null) as Record<string, unknown>).polluted).toBeUndefined();
}

/**
 * Runs a fast-check property over hostile input while the real process is watched for unhandled
 * rejections and uncaught exceptions: after every run and at the end, no built-in prototype has
 * changed and nothing went unhandled.
 */
export async function assertHostile<T>(arbitrary: fc.Arbitrary<T>, run: (value: T) => Promise<void>, numRuns: number): Promise<void> {
  const before = prototypeKeys();
  const watch = watchProcess();
  try {
    await fc.assert(
      fc.asyncProperty(arbitrary, async (value) => {
        await run(value);
        expectNoPollution(before);
      }),
      { numRuns },
    );
  } finally {
    watch.stop();
  }
  expect(watch.errors).toEqual([]);
  expectNoPollution(before);
}

// ---------------------------------------------------------------- arbitraries

/** Valid correlation ids: mostly short, sometimes exactly 128 characters (the longest valid one). */
export const validId: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: fc.stringMatching(/^[A-Za-z0-9._:-]{1,24}$/) },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9._:-]{128}$/) },
);

const char = (from: number, to: number) => fc.integer({ min: from, max: to }).map((code) => String.fromCharCode(code));

/** Strings that are not valid ids but look close to one, or that break naive parsers. */
const nastyString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    'bad id',
    ' padded-id ',
    'a,b',
    'bad id, good-id',
    'good-id ,bad id',
    ',,,',
    'id\r\nx-injected: 1',
    'id\nid',
    '\u0000',
    'id\u0000',
    '\uD800',
    'a\uDC00b',
    '\uD83D\uDE00',
    '\uFEFFid',
    '\u202Eevil',
    'null',
    '__proto__',
    '[object Object]',
    '%00',
    'é',
    'x'.repeat(129),
  ),
  // An almost valid id with one foreign character somewhere.
  fc
    .tuple(validId, fc.oneof(char(0, 0x1f), char(0x7f, 0xff), char(0xd800, 0xdfff), fc.constantFrom(' ', ',', ';', '"', '\\', '/')), fc.nat())
    .map(([id, bad, at]) => {
      const i = at % (id.length + 1);
      return id.slice(0, i) + bad + id.slice(i);
    }),
);

/** Control characters only (C0, DEL, C1), CR/LF included. */
const controlString = fc.string({ unit: fc.oneof(char(0, 0x1f), char(0x7f, 0x9f)), minLength: 1, maxLength: 8 });
/** Lone surrogates mixed with valid characters. */
const surrogateString = fc.string({ unit: fc.oneof(char(0xd800, 0xdfff), fc.constantFrom('a', '1', '-')), minLength: 1, maxLength: 8 });
/** Any code points (astral ones included). */
const binaryString = fc.string({ unit: 'binary', maxLength: 24 });

/** Values around and far above the limits: 129 (too long an id), 8192 / 8193 (the value cap), 9 KB, 100 KB. */
export const hugeString: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('x', '-', 'é', ' ', '\u0000', '\uD83D\uDE00', 'a,'), fc.constantFrom(129, 8192, 8193, 9000, 100_000))
  .map(([unit, n]) => unit.repeat(Math.ceil(n / unit.length)).slice(0, n));

/** One hostile string value. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: validId },
  { weight: 8, arbitrary: nastyString },
  { weight: 2, arbitrary: controlString },
  { weight: 2, arbitrary: surrogateString },
  { weight: 3, arbitrary: binaryString },
  { weight: 1, arbitrary: hugeString },
);

/** Header names: mostly the ones the library reads, then case and spacing variants, prototype keys, anything. */
export const headerName: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...ID_NAMES) },
  { weight: 3, arbitrary: fc.constantFrom(...TRACE_NAMES) },
  { weight: 2, arbitrary: fc.constantFrom('X-Request-Id', 'X-REQUEST-ID', 'x-request-id ', 'x_request_id', 'X-Correlation-ID', 'Traceparent') },
  {
    weight: 2,
    arbitrary: fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'polluted'),
  },
  { weight: 1, arbitrary: fc.constantFrom('__nestjs_context__', 'data', 'pattern', 'metadata') },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);

/**
 * JSON texts that try to pollute a prototype once parsed and merged naively; each also carries a
 * valid id ({@link PROTO_ID}) that no handler may ever see.
 */
export const POISON_JSON = [
  `{"polluted":"yes","x-request-id":"${PROTO_ID}","x-correlation-id":"${PROTO_ID}"}`,
  `{"prototype":{"polluted":"yes","x-request-id":"${PROTO_ID}"}}`,
  `{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}`,
];

/**
 * A JSON leaf: hostile strings, numbers (NaN/Infinity become null), booleans, null, Buffers and
 * Uint8Arrays as JSON serialises them, and the prototype poisons.
 */
const jsonLeaf: fc.Arbitrary<string> = fc.oneof(
  { weight: 10, arbitrary: hostileString.map((s) => JSON.stringify(s)) },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double()).map((n) => JSON.stringify(n)) },
  { weight: 1, arbitrary: fc.boolean().map(String) },
  { weight: 1, arbitrary: fc.constant('null') },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((bytes) => JSON.stringify(Buffer.from(bytes))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 6 }).map((bytes) => JSON.stringify(bytes)) },
  { weight: 1, arbitrary: fc.constantFrom(...POISON_JSON) },
);

/** Renders entries as a JSON object text: duplicates and `__proto__` stay (JSON.parse makes `__proto__` an own key). */
export const objectText = (entries: ReadonlyArray<readonly [string, string]>): string =>
  `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`;

const tree = fc.letrec<{ value: string; array: string; object: string }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, jsonLeaf, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(',')}]`),
  object: fc.array(fc.tuple(headerName, tie('value')), { maxLength: 5 }).map(objectText),
}));

/** Any JSON value (as text), nested, with hostile keys and leaves. */
export const jsonValue: fc.Arbitrary<string> = tree.value;

/** One header's value as JSON text: mostly a string, else a list of them (a repeated header), else anything. */
const headerValueJson: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: hostileString.map((s) => JSON.stringify(s)) },
  { weight: 2, arbitrary: fc.array(hostileString, { minLength: 1, maxLength: 4 }).map((list) => JSON.stringify(list)) },
  { weight: 2, arbitrary: jsonValue },
);

/** A header map as JSON text: mostly an object of hostile entries, sometimes any other JSON value. */
export const headerMapJson: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.array(fc.tuple(headerName, headerValueJson), { maxLength: 8 }).map(objectText) },
  { weight: 1, arbitrary: jsonValue },
);

/**
 * A message's TCP/Redis-style metadata: NestJS 12 `packet.metadata` (or none) and a fallback
 * envelope around the payload (or none), both as JSON text.
 */
export interface JsonCarriers {
  metadata: string | undefined;
  envelope: string | undefined;
}

export const jsonCarriers: fc.Arbitrary<JsonCarriers> = fc.record({
  metadata: fc.option(headerMapJson, { nil: undefined, freq: 4 }),
  envelope: fc.option(headerMapJson, { nil: undefined, freq: 3 }),
});

/** The JSON packet a Nest TCP/Redis/NATS/MQTT/RMQ producer sends, with the carriers spliced in as raw JSON. */
export function packetJson(pattern: string, key: string, carriers: JsonCarriers, withMetadata: boolean): string {
  const payload = JSON.stringify({ key });
  const data = carriers.envelope === undefined ? payload : `{"__nestjs_context__":${carriers.envelope},"data":${payload}}`;
  const metadata = withMetadata && carriers.metadata !== undefined ? `,"metadata":${carriers.metadata}` : '';
  return `{"pattern":${JSON.stringify(pattern)},"data":${data}${metadata}}`;
}

// ---------------------------------------------------------------- the oracle

/**
 * One metadata source of a message as the receiving server sees it, in priority order:
 * `strings` (NestJS 12 packet metadata: own string values only), `record` (an object whose own
 * values are strings or lists of them: envelope, RabbitMQ headers, MQTT user properties) or
 * `lists` (values of repeated headers by name: NATS, gRPC).
 */
export type Source =
  | { kind: 'strings'; value: unknown }
  | { kind: 'record'; value: unknown }
  | { kind: 'lists'; get(name: string): unknown[] };

const usable = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= MAX_VALUE_LENGTH;

function ownOf(value: unknown, name: string): unknown {
  return value !== null && typeof value === 'object' && Object.prototype.hasOwnProperty.call(value, name)
    ? (value as Record<string, unknown>)[name]
    : undefined;
}

/**
 * The candidates a receiver must consider for each id header: every usable value, source by source,
 * each value of a repeated header in order, at most 16 per header (the documented contract).
 */
export function candidates(sources: readonly Source[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const name of ID_NAMES) {
    const list: string[] = [];
    for (const source of sources) {
      let values: unknown[];
      if (source.kind === 'lists') values = source.get(name);
      else if (source.kind === 'strings') {
        const value = Array.isArray(source.value) ? undefined : ownOf(source.value, name);
        values = typeof value === 'string' ? [value] : [];
      } else {
        const value = ownOf(source.value, name);
        values = Array.isArray(value) ? value.slice(0, MAX_CANDIDATES) : [value];
      }
      for (const value of values) if (usable(value) && list.length < MAX_CANDIDATES) list.push(value);
    }
    if (list.length > 0) out[name] = list;
  }
  return out;
}

/** Every string anywhere in `value` (keys included), for the "no id out of thin air" check. */
export function stringsIn(value: unknown, out: Set<string> = new Set(), depth = 0): Set<string> {
  if (typeof value === 'string') out.add(value);
  else if (Buffer.isBuffer(value)) out.add(value.toString('latin1'));
  else if (value !== null && typeof value === 'object' && depth < 32) {
    for (const key of Reflect.ownKeys(value)) {
      if (typeof key !== 'string') continue;
      out.add(key);
      stringsIn((value as Record<string, unknown>)[key], out, depth + 1);
    }
  }
  return out;
}

/**
 * Checks the correlation id one handler saw:
 * - always a valid id; never an invalid value that was sent (no raw echo);
 * - the first valid candidate in priority order (the library's own `readCorrelationId` over the
 *   candidates the message carries, so this does not depend on how a single value is split);
 * - when no candidate is valid, a fresh id that appears nowhere in the message;
 * - in any case either fresh or a piece of something that was sent (never out of thin air, never
 *   the id hidden under `__proto__`).
 */
export function expectIdFrom(seen: string | undefined, found: Record<string, string[]>, sent: Set<string>): void {
  expect(typeof seen).toBe('string');
  const id = seen as string;
  expect({ id, valid: isValidCorrelationId(id) }).toEqual({ id, valid: true });
  for (const value of sent) if (!isValidCorrelationId(value)) expect(id).not.toBe(value);
  // Shaped as the extractor hands it on: one candidate as a string, several as a list.
  const shaped: Record<string, string | string[]> = {};
  for (const [name, list] of Object.entries(found)) shaped[name] = list.length === 1 ? (list[0] as string) : list;
  const expected = readCorrelationId(shaped, ID_NAMES, isValidCorrelationId);
  if (expected !== undefined) {
    expect({ id, candidates: found }).toEqual({ id: expected, candidates: found });
  } else {
    expect({ id, fresh: FRESH.test(id), sent: sent.has(id) }).toEqual({ id, fresh: true, sent: false });
  }
  if (!FRESH.test(id)) expect([...sent].some((value) => value.includes(id))).toBe(true);
  if (!found[ID_NAMES[0]]?.includes(PROTO_ID) && !found[ID_NAMES[1]]?.includes(PROTO_ID)) expect(id).not.toBe(PROTO_ID);
}

// ---------------------------------------------------------------- the receiving microservice

/** What the handler saw of one message. */
export interface Received {
  key: string;
  payload: unknown;
  correlationId: string | undefined;
  viaCurrent: string | undefined;
  traceId: string | undefined;
  parentId: string | undefined;
  tenant: unknown;
}

/** What the hostile-message handlers saw, by the key in their payload. */
export const received = new EventLog<Received>();

/** The pattern (subject, topic, channel) the receiver listens on. */
export const hostilePattern = (prefix: string): string => `${prefix}.hostile`;

/**
 * A microservice that records, for each event, the correlation id through two access paths and the
 * trace and baggage (so hostile traceparent/tracestate/baggage values are parsed too).
 */
export function receiverModule(prefix: string): Type {
  @Controller()
  class HostileReceiver {
    constructor(private readonly context: ContextService<TransportContext>) {}

    @EventPattern(hostilePattern(prefix))
    event(@Payload() payload: unknown): void {
      const key = (payload as { key?: unknown } | null)?.key;
      if (typeof key !== 'string') return;
      const trace = this.context.trace;
      received.record(key, {
        key,
        payload,
        correlationId: this.context.correlationId,
        viaCurrent: (currentContext as unknown as TransportContext).correlationId,
        traceId: trace?.traceId,
        parentId: trace?.parentId,
        tenant: this.context.get().tenant,
      });
    }
  }

  @Module({
    imports: [ContextModule.forRoot(TransportContext, serverContextOptions), ContextMicroservicesModule.forRoot()],
    controllers: [HostileReceiver],
  })
  class HostileReceiverModule {}
  return HostileReceiverModule;
}

/** The checks every handled message must pass besides the id: one context, a well-formed trace. */
export function expectWellFormed(seen: Received, key: string): void {
  expect(seen.payload).toEqual({ key });
  expect(seen.viaCurrent).toBe(seen.correlationId);
  expect(seen.traceId).toMatch(/^[0-9a-f]{32}$/);
  if (seen.parentId !== undefined) expect(seen.parentId).toMatch(/^[0-9a-f]{16}$/);
  if (seen.tenant !== undefined) expect(typeof seen.tenant).toBe('string');
}

let counter = 0;
/** A key unique in this process, for one message. */
export const nextKey = (prefix: string): string => `${prefix}-${process.pid}-${++counter}`;

/** Runs count per property: `HARDENING_RUNS` scales them (e.g. 10 for a deep run, 0.2 for a smoke run). */
export function runs(count: number): number {
  const scale = Number(process.env.HARDENING_RUNS ?? '1');
  return Math.max(1, Math.round(count * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}
