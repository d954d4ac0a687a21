import 'reflect-metadata';
import type { INestApplication, INestMicroservice } from '@nestjs/common';
import { ApplicationConfig, NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions, type Server } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import fc from 'fast-check';
import { isObservable, lastValueFrom } from 'rxjs';
import { ContextModule, ContextService } from '../../../src/index.js';
import { ContextHost } from '../../../src/runtime/context-host.js';
import type { ContextRecord } from '../../../src/record/context-record.js';
import { outboundHeaders } from '../../../src/propagation/inject.js';
import { contextProcessor, JOB_CONTEXT_OPTION } from '../../../src/integrations/bullmq/index.js';
import { ENVELOPE_CARRIER, extractCarrier } from '../../../src/integrations/microservices/carrier.js';
import { ContextMicroservicesModule } from '../../../src/integrations/microservices/index.js';
import { ContextWsModule } from '../../../src/integrations/websockets/index.js';
import { isValidCorrelationId } from '../../../src/propagation/correlation-id.js';
import { freePort } from '../../utils/brokers.js';
import { serverContextOptions, TransportContext } from '../../transports/fixtures/harness.js';
import {
  expectNoPollution,
  FRESH,
  headerName,
  hostilePattern,
  hostileString,
  ID_NAMES,
  jsonValue,
  nextKey,
  PROTO_ID,
  prototypeKeys,
  received,
  receiverModule,
  runs,
  TRACE_NAMES,
  watchProcess,
} from './fixtures.js';

/**
 * In-process objects no wire can carry, fed to every non-HTTP entry: getters that throw, Proxies
 * whose every trap throws, revoked Proxies, frozen and null-prototype objects, functions, symbols,
 * Buffers and typed arrays, at every level of each transport's context shape (TCP/Redis packet
 * metadata and envelope, gRPC Metadata, NATS headers, MQTT packets, RabbitMQ messages), of socket.io
 * sockets (WebSocket handshake) and of BullMQ jobs. The objects are built inside the property from
 * plain descriptions, so fast-check never has to print a throwing Proxy.
 */

// ---------------------------------------------------------------- descriptions and builders

/** One hostile value. */
type ValueDesc =
  | { t: 'json'; text: string }
  | { t: 'throw' }
  | { t: 'proxy' }
  | { t: 'revoked' }
  | { t: 'buffer'; bytes: number[] }
  | { t: 'uint8'; bytes: number[] }
  | { t: 'fn' }
  | { t: 'symbol' }
  | { t: 'bigint' };

/** An object holding header-like entries, or something that is not one. */
type MapDesc =
  | { t: 'map'; entries: Array<[string, ValueDesc]>; frozen: boolean; nullProto: boolean; inherits: boolean }
  | { t: 'value'; value: ValueDesc };

/** How a container holds what is under its key. */
type How = 'plain' | 'frozen' | 'getter' | 'throwing-getter' | 'proxy' | 'revoked' | 'null' | 'string' | 'array';

/** A valid traceparent only ever inherited: no record may continue its trace. */
const INHERITED_TRACE = '0af7651916cd43dd8448eb211c80319c';
const INHERITED_TRACEPARENT = `00-${INHERITED_TRACE}-b7ad6b7169203331-01`;

const boom = (): never => {
  throw new Error('hostile getter');
};

function throwingProxy(): object {
  return new Proxy(
    {},
    { get: boom, has: boom, ownKeys: boom, getPrototypeOf: boom, getOwnPropertyDescriptor: boom, set: boom, defineProperty: boom, deleteProperty: boom, apply: boom },
  );
}

function revokedProxy(): object {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
}

const valueDesc: fc.Arbitrary<ValueDesc> = fc.oneof(
  { weight: 6, arbitrary: hostileString.map((s) => ({ t: 'json' as const, text: JSON.stringify(s) })) },
  { weight: 2, arbitrary: fc.array(hostileString, { minLength: 1, maxLength: 4 }).map((list) => ({ t: 'json' as const, text: JSON.stringify(list) })) },
  { weight: 2, arbitrary: jsonValue.map((text) => ({ t: 'json' as const, text })) },
  { weight: 2, arbitrary: fc.constantFrom<ValueDesc>({ t: 'throw' }, { t: 'proxy' }, { t: 'revoked' }, { t: 'fn' }, { t: 'symbol' }, { t: 'bigint' }) },
  { weight: 1, arbitrary: fc.array(fc.nat(255), { maxLength: 16 }).map((bytes) => ({ t: 'buffer' as const, bytes })) },
  { weight: 1, arbitrary: fc.array(fc.nat(255), { maxLength: 16 }).map((bytes) => ({ t: 'uint8' as const, bytes })) },
);

const mapDesc: fc.Arbitrary<MapDesc> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('map' as const),
      entries: fc.array(fc.tuple(headerName, valueDesc), { maxLength: 8 }),
      frozen: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
      nullProto: fc.boolean(),
      inherits: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
    }),
  },
  { weight: 1, arbitrary: valueDesc.map((value) => ({ t: 'value' as const, value })) },
);

const how: fc.Arbitrary<How> = fc.oneof(
  { weight: 8, arbitrary: fc.constant<How>('plain') },
  { weight: 1, arbitrary: fc.constantFrom<How>('frozen', 'getter', 'throwing-getter', 'proxy', 'revoked', 'null', 'string', 'array') },
);

/** Builds hostile objects and remembers every string put into them. */
class Builder {
  readonly sent = new Set<string>();

  value(desc: ValueDesc): unknown {
    switch (desc.t) {
      case 'json': {
        const value: unknown = JSON.parse(desc.text);
        this.collect(value);
        return value;
      }
      case 'throw':
        return throwingProxy();
      case 'proxy':
        return throwingProxy();
      case 'revoked':
        return revokedProxy();
      case 'buffer':
        this.sent.add(Buffer.from(desc.bytes).toString('latin1'));
        return Buffer.from(desc.bytes);
      case 'uint8':
        return Uint8Array.from(desc.bytes);
      case 'fn':
        return () => 'x-request-id';
      case 'symbol':
        return Symbol('x-request-id');
      case 'bigint':
        return 10n ** 30n;
    }
  }

  /** A header map; a `throw` entry is a getter that throws. */
  map(desc: MapDesc): unknown {
    if (desc.t === 'value') return this.value(desc.value);
    // `inherits`: a prototype that holds ids and a trace, which must never be read (own values only).
    const proto = desc.inherits ? { 'x-request-id': PROTO_ID, 'x-correlation-id': PROTO_ID, traceparent: INHERITED_TRACEPARENT } : desc.nullProto ? null : Object.prototype;
    const out = Object.create(proto) as Record<string, unknown>;
    for (const [key, value] of desc.entries) {
      this.sent.add(key);
      if (value.t === 'throw') Object.defineProperty(out, key, { get: boom, enumerable: true, configurable: true });
      else Object.defineProperty(out, key, { value: this.value(value), enumerable: true, configurable: true, writable: true });
    }
    return desc.frozen ? Object.freeze(out) : out;
  }

  /** `inner` under `key`, held the way `how` says. */
  hold(key: string, how: How, inner: unknown): unknown {
    switch (how) {
      case 'plain':
        return { [key]: inner };
      case 'frozen':
        return Object.freeze({ [key]: inner });
      case 'getter':
        return Object.defineProperty({}, key, { get: () => inner, enumerable: true });
      case 'throwing-getter':
        return Object.defineProperty({}, key, { get: boom, enumerable: true });
      case 'proxy':
        return throwingProxy();
      case 'revoked':
        return revokedProxy();
      case 'null':
        return null;
      case 'string':
        return key;
      case 'array':
        return [inner];
    }
  }

  /** A method returning `inner`, or throwing. */
  method(inner: unknown, throws: boolean): () => unknown {
    return throws ? boom : () => inner;
  }

  private collect(value: unknown, depth = 0): void {
    if (typeof value === 'string') this.sent.add(value);
    else if (value !== null && typeof value === 'object' && depth < 32) {
      for (const key of Object.keys(value)) {
        this.sent.add(key);
        this.collect((value as Record<string, unknown>)[key], depth + 1);
      }
    }
  }
}

// ---------------------------------------------------------------- the transports' context shapes

/** Which message shape, with the hostile parts. */
type RpcDesc =
  | { t: 'tcp'; metadata: MapDesc; throws: boolean; envelope: MapDesc | undefined }
  | { t: 'grpc'; values: Array<[string, ValueDesc[]]>; throws: boolean }
  | { t: 'grpc-stream'; holder: How; values: Array<[string, ValueDesc[]]> }
  | { t: 'nats'; values: Array<[string, ValueDesc[]]>; throws: boolean; headers: How }
  | { t: 'mqtt'; properties: How; userProperties: How; map: MapDesc; throws: boolean; envelope: MapDesc | undefined }
  | { t: 'rmq'; properties: How; headers: How; map: MapDesc; throws: boolean };

const repeated = fc.array(fc.tuple(fc.constantFrom(...ID_NAMES, ...TRACE_NAMES, '__proto__'), fc.array(valueDesc, { maxLength: 4 })), { maxLength: 5 });
const envelope = fc.option(mapDesc, { nil: undefined, freq: 3 });

const rpcDesc: fc.Arbitrary<RpcDesc> = fc.oneof(
  fc.record({ t: fc.constant('tcp' as const), metadata: mapDesc, throws: fc.boolean(), envelope }),
  fc.record({ t: fc.constant('grpc' as const), values: repeated, throws: fc.boolean() }),
  fc.record({ t: fc.constant('grpc-stream' as const), holder: how, values: repeated }),
  fc.record({ t: fc.constant('nats' as const), values: repeated, throws: fc.boolean(), headers: how }),
  fc.record({ t: fc.constant('mqtt' as const), properties: how, userProperties: how, map: mapDesc, throws: fc.boolean(), envelope }),
  fc.record({ t: fc.constant('rmq' as const), properties: how, headers: how, map: mapDesc, throws: fc.boolean() }),
);

/** A per-name lookup over repeated values; a name whose value list holds a `throw` throws. */
function lookup(b: Builder, values: Array<[string, ValueDesc[]]>): (name: string) => unknown {
  const built = values.map(([name, list]) => [name, list.map((v) => (v.t === 'throw' ? boom : b.value(v)))] as const);
  return (name) => {
    const found = built.find(([key]) => key === name);
    if (found === undefined) return [];
    if (found[1].includes(boom)) boom();
    return found[1];
  };
}

/** The handler arguments (payload, transport context) a message of this shape hands over. */
function rpcArgs(desc: RpcDesc, b: Builder, payload: unknown): { data: unknown; transport: unknown } {
  switch (desc.t) {
    case 'tcp': {
      const transport: Record<PropertyKey, unknown> = { getMetadata: b.method(b.map(desc.metadata), desc.throws) };
      if (desc.envelope !== undefined) transport[ENVELOPE_CARRIER] = b.map(desc.envelope);
      return { data: payload, transport };
    }
    case 'grpc': {
      const get = lookup(b, desc.values);
      return { data: payload, transport: { get: desc.throws ? boom : get, getMap: boom } };
    }
    case 'grpc-stream': {
      const metadata = { get: lookup(b, desc.values), getMap: () => ({}) };
      return { data: b.hold('metadata', desc.holder, metadata), transport: () => undefined };
    }
    case 'nats': {
      const get = lookup(b, desc.values);
      const headers = b.hold('get', desc.headers, (name: string) => (get(name) as unknown[])[0]) as Record<string, unknown> | null;
      if (headers !== null && typeof headers === 'object' && desc.headers === 'plain') headers.values = get;
      return { data: payload, transport: { getHeaders: b.method(headers, desc.throws) } };
    }
    case 'mqtt': {
      const packet = b.hold('properties', desc.properties, b.hold('userProperties', desc.userProperties, b.map(desc.map)));
      const transport: Record<PropertyKey, unknown> = { getPacket: b.method(packet, desc.throws) };
      if (desc.envelope !== undefined) transport[ENVELOPE_CARRIER] = b.map(desc.envelope);
      return { data: payload, transport };
    }
    case 'rmq': {
      const message = b.hold('properties', desc.properties, b.hold('headers', desc.headers, b.map(desc.map)));
      return { data: payload, transport: { getMessage: b.method(message, desc.throws), getChannelRef: () => ({}) } };
    }
  }
}

// ---------------------------------------------------------------- checks

const NAMES = [...TRACE_NAMES, ...ID_NAMES];
const IDS = new Set<string>(ID_NAMES);

/** The extractor's contract: a prototype-free record of known names, strings (at most 8192) or lists of 2–16 of them. */
function expectCarrierShape(carrier: unknown): void {
  if (carrier === undefined) return;
  expect(Object.getPrototypeOf(carrier)).toBeNull();
  for (const [name, value] of Object.entries(carrier as object)) {
    expect(NAMES).toContain(name);
    const list: unknown[] = Array.isArray(value) ? value : [value];
    if (Array.isArray(value)) {
      expect(IDS.has(name)).toBe(true);
      expect(value.length).toBeGreaterThanOrEqual(2);
      expect(value.length).toBeLessThanOrEqual(16);
    }
    for (const item of list) {
      expect(typeof item).toBe('string');
      expect((item as string).length).toBeGreaterThan(0);
      expect((item as string).length).toBeLessThanOrEqual(8192);
    }
  }
}

/** A valid id: fresh, or a piece of a string that was put into the message (never the one under `__proto__` alone). */
function expectSaneId(id: unknown, sent: Set<string>): void {
  expect(typeof id).toBe('string');
  expect({ id, valid: isValidCorrelationId(id as string) }).toEqual({ id, valid: true });
  if (!FRESH.test(id as string)) expect({ id, fromMessage: [...sent].some((value) => value.includes(id as string)) }).toEqual({ id, fromMessage: true });
}

/** Every lazily built part of a record can be read without throwing. */
function expectReadable(record: ContextRecord): void {
  expect(record.trace.traceId).toMatch(/^[0-9a-f]{32}$/);
  expect(Array.isArray(record.baggage)).toBe(true);
  expect(record.context).toBeDefined();
  expect(typeof outboundHeaders(record)).toBe('object');
}

// ---------------------------------------------------------------- the suite

describe('hostile in-process objects at every non-HTTP entry', () => {
  let app: INestApplication;
  let host: ContextHost;
  let micro: INestMicroservice;
  const prefix = `hz-inproc-${process.pid}`;
  const before = prototypeKeys();
  let watch: ReturnType<typeof watchProcess>;

  beforeAll(async () => {
    watch = watchProcess();
    const moduleRef = await Test.createTestingModule({
      imports: [
        ContextModule.forRoot(TransportContext, serverContextOptions),
        ContextMicroservicesModule.forRoot(),
        ContextWsModule.forRoot({ handshake: true }),
      ],
    }).compile();
    app = moduleRef.createNestApplication(undefined as never, { logger: false });
    await app.init();
    host = app.get(ContextHost);
    micro = await NestFactory.createMicroservice<MicroserviceOptions>(receiverModule(prefix), {
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port: await freePort() },
      logger: false,
    });
    await micro.init();
  });

  afterAll(async () => {
    await micro?.close();
    await app?.close();
    watch.stop();
    expect(watch.errors).toEqual([]);
    expectNoPollution(before);
  });

  it(`rpc extractor and host: never throw, a well-formed carrier, a sane id, readable trace/baggage/context (${runs(400)} runs)`, () => {
    fc.assert(
      fc.property(rpcDesc, (desc) => {
        const b = new Builder();
        const { data, transport } = rpcArgs(desc, b, { key: 'k' });
        expectCarrierShape(extractCarrier(data, transport, NAMES, IDS));
        const record = host.forMessage('rpc', data, transport);
        expectSaneId(record.correlationId, b.sent);
        if (!b.sent.has(PROTO_ID)) expect(record.correlationId).not.toBe(PROTO_ID);
        expectReadable(record);
        if (![...b.sent].some((value) => value.includes(INHERITED_TRACE))) expect(record.trace.traceId).not.toBe(INHERITED_TRACE);
        expectNoPollution(before);
      }),
      { numRuns: runs(400) },
    );
  });

  it(`message handlers (Nest's pipeline, through the library's wrapper): hostile payloads, envelopes and transport contexts; the handler always runs (${runs(150)} runs)`, async () => {
    // Nest's own Server instance (unwrap() gives the transport's server socket).
    const server = (micro as unknown as { serverInstance: Server }).serverInstance;
    const handler = server.getHandlerByPattern(hostilePattern(prefix));
    expect(handler).not.toBeNull();
    await fc.assert(
      // Every shape but the gRPC stream pass-through, whose first argument is the call, not a payload.
      fc.asyncProperty(rpcDesc.filter((d) => d.t !== 'grpc-stream'), fc.option(fc.tuple(mapDesc, fc.constantFrom<How>('plain', 'getter', 'throwing-getter')), { nil: undefined }), async (desc, wrap) => {
        const b = new Builder();
        const key = nextKey(prefix);
        let payload: unknown = { key };
        if (wrap !== undefined) {
          // A fallback envelope whose metadata is hostile (held by a getter that may throw); its data is intact.
          const [metadata, held] = wrap;
          const envelope = { data: payload } as Record<string, unknown>;
          const inner = b.map(metadata);
          if (held === 'plain') envelope.__nestjs_context__ = inner;
          else Object.defineProperty(envelope, '__nestjs_context__', { get: held === 'getter' ? () => inner : boom, enumerable: true, configurable: true });
          payload = envelope;
        }
        const { data, transport } = rpcArgs(desc, b, payload);
        const result: unknown = await handler!(data, transport);
        if (isObservable(result)) await lastValueFrom(result, { defaultValue: undefined });
        const seen = await received.waitFor(key, 2000);
        expect(seen.payload).toEqual({ key });
        expect(seen.viaCurrent).toBe(seen.correlationId);
        expectSaneId(seen.correlationId, b.sent);
        expectNoPollution(before);
      }),
      { numRuns: runs(150) },
    );
  });

  /** A socket.io-like socket whose handshake carries the hostile headers. */
  type SocketDesc = { socket: How; request: How; handshake: How; headers: MapDesc };
  const socketDesc: fc.Arbitrary<SocketDesc> = fc.record({ socket: how, request: how, handshake: how, headers: mapDesc });

  function socketOf(desc: SocketDesc, b: Builder): unknown {
    const headers = b.map(desc.headers);
    const request = b.hold('headers', desc.request, headers);
    const handshake = b.hold('headers', desc.handshake, headers);
    if (desc.socket === 'proxy') return throwingProxy();
    if (desc.socket === 'revoked') return revokedProxy();
    const socket: Record<string, unknown> = { id: 'socket-1' };
    if (desc.socket === 'throwing-getter') {
      Object.defineProperty(socket, 'request', { get: boom, enumerable: true });
      Object.defineProperty(socket, 'handshake', { get: boom, enumerable: true });
    } else {
      socket.request = request;
      socket.handshake = handshake;
    }
    return desc.socket === 'frozen' ? Object.freeze(socket) : socket;
  }

  it(`WebSocket (handshake: true): the 'ws' extractor and the adapter wrapper never throw; a sane id (${runs(300)} runs)`, () => {
    // The adapter wrapper: bind one handler through the app's (wrapped) adapter and call it.
    const bound: Array<{ callback: (...args: unknown[]) => unknown }> = [];
    const adapter = {
      bindMessageHandlers: (_client: unknown, handlers: Array<{ callback: (...args: unknown[]) => unknown }>, _transform: unknown) => bound.push(...handlers),
      bindClientConnect: () => undefined,
      bindClientDisconnect: () => undefined,
      create: () => ({}),
      close: () => undefined,
      dispose: () => undefined,
    };
    app.useWebSocketAdapter(adapter as never);
    const wrapped = app.get(ApplicationConfig).getIoAdapter() as unknown as typeof adapter;
    fc.assert(
      fc.property(socketDesc, fc.boolean(), (desc, socketFirst) => {
        const b = new Builder();
        const socket = socketOf(desc, b);
        const record = socketFirst ? host.forMessage('ws', socket, { key: 'k' }) : host.forMessage('ws', { key: 'k' }, socket);
        expectSaneId(record.correlationId, b.sent);
        if (!b.sent.has(PROTO_ID)) expect(record.correlationId).not.toBe(PROTO_ID);
        expectReadable(record);
        bound.length = 0;
        wrapped.bindMessageHandlers(socket, [{ callback: () => host.forMessage('ws', socket, {}).correlationId }], (x: unknown) => x);
        expect(bound).toHaveLength(1);
        expectSaneId(bound[0]!.callback({ key: 'k' }), b.sent);
        expectNoPollution(before);
      }),
      { numRuns: runs(300) },
    );
  });

  /** A BullMQ job whose options (or the job itself) are hostile. */
  type JobDesc = { opts: How; metadata: MapDesc; frozen: boolean };
  const jobDesc: fc.Arbitrary<JobDesc> = fc.record({ opts: how, metadata: mapDesc, frozen: fc.boolean() });

  it(`BullMQ contextProcessor(): hostile jobs never break the processor call; it runs with a sane id (${runs(300)} runs)`, () => {
    const contexts = app.get<ContextService<TransportContext>>(ContextService);
    let id: string | undefined;
    const processor = contextProcessor((job: unknown) => {
      id = contexts.correlationId;
      return job;
    });
    fc.assert(
      fc.property(jobDesc, (desc) => {
        const b = new Builder();
        const job = { id: 'job-1', data: { key: 'k' }, opts: b.hold(JOB_CONTEXT_OPTION, desc.opts, b.map(desc.metadata)) };
        const input = desc.frozen ? Object.freeze(job) : job;
        id = undefined;
        // Inside a context of this suite's app, so the processor finds its app (two apps are alive here).
        expect(contexts.run(() => processor(input as never))).toBe(input);
        expectSaneId(id, b.sent);
        expectNoPollution(before);
      }),
      { numRuns: runs(300) },
    );
  });
});
