import 'reflect-metadata';
import { ClientProxyFactory, MqttRecord, NatsRecord, RmqRecord, Transport, type ClientProxy } from '@nestjs/microservices';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { Test } from '@nestjs/testing';
import { ContextConfigError, ContextModule, ContextService } from '../../src/index.js';
import { extractCarrier, ENVELOPE_CARRIER } from '../../src/integrations/microservices/carrier.js';
import { packetMetadataSupport, withOutboundContext, withPacketMetadata } from '../../src/integrations/microservices/client.js';
import { CONTEXT_ENVELOPE_KEY, isEnvelope } from '../../src/integrations/microservices/envelope.js';
import {
  ContextMicroservicesModule,
  propagateGlobalClients,
  propagateContext,
} from '../../src/integrations/microservices/index.js';
import { freePort, requireBroker } from '../utils/brokers.js';
import { hasPacketMetadata, TransportContext } from './fixtures/harness.js';

/** An outgoing packet as NestJS 12's `createPacket` builds it. */
interface Pkt {
  pattern: string;
  data: unknown;
  metadata?: unknown;
}

const NAMES = ['traceparent', 'tracestate', 'baggage', 'x-request-id', 'x-correlation-id'];

describe('microservices metadata (no broker)', () => {
  let contexts: ContextService<TransportContext>;
  let close: () => Promise<void>;
  const clients: Record<string, ClientProxy> = {};

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [ContextModule.forRoot(TransportContext), ContextMicroservicesModule.forRoot()],
    }).compile();
    await moduleRef.init();
    contexts = moduleRef.get(ContextService);
    close = () => moduleRef.close();
    clients.rmq = ClientProxyFactory.create({ transport: Transport.RMQ, options: { urls: ['amqp://127.0.0.1:1'] } }) as ClientProxy;
    clients.nats = ClientProxyFactory.create({ transport: Transport.NATS, options: {} }) as ClientProxy;
    clients.mqtt5 = ClientProxyFactory.create({ transport: Transport.MQTT, options: { protocolVersion: 5 } }) as ClientProxy;
    clients.mqtt4 = ClientProxyFactory.create({ transport: Transport.MQTT, options: {} }) as ClientProxy;
    clients.tcp = ClientProxyFactory.create({ transport: Transport.TCP }) as ClientProxy;
    clients.redis = ClientProxyFactory.create({ transport: Transport.REDIS, options: { port: 1 } }) as ClientProxy;
  });
  afterAll(() => close());

  it('outside a context every client gets the payload back untouched', () => {
    const payload = { a: 1 };
    for (const client of Object.values(clients)) expect(withOutboundContext(client, payload)).toBe(payload);
  });

  it('RabbitMQ: a user record keeps its options and its own headers win; it is not mutated', () => {
    const own = new RmqRecord({ a: 1 }, { headers: { 'x-request-id': 'mine', other: 'kept' }, priority: 3 });
    const out = contexts.run(() => withOutboundContext(clients.rmq!, own), { correlationId: 'cid-1' }) as RmqRecord;
    expect(out).toBeInstanceOf(RmqRecord);
    expect(out.data).toEqual({ a: 1 });
    expect(out.options).toMatchObject({ priority: 3, headers: { 'x-request-id': 'mine', other: 'kept' } });
    expect(out.options?.headers?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
    expect(own.options?.headers).toEqual({ 'x-request-id': 'mine', other: 'kept' });
  });

  it('NATS: a user record keeps its headers (copied, not mutated); the context is added', () => {
    const h = natsHeaders();
    h.set('x-own', 'kept');
    const own = new NatsRecord({ a: 1 }, h);
    const out = contexts.run(() => withOutboundContext(clients.nats!, own), { correlationId: 'cid-2' }) as NatsRecord;
    const outHeaders = out.headers as ReturnType<typeof natsHeaders>;
    expect(outHeaders.get('x-own')).toBe('kept');
    expect(outHeaders.get('x-request-id')).toBe('cid-2');
    expect(h.has('traceparent')).toBe(false);
  });

  it('MQTT 5: user properties merged, the user\'s win; MQTT 3.1.1 falls back to the envelope', () => {
    const own = new MqttRecord({ a: 1 }, { qos: 1, properties: { userProperties: { 'x-request-id': 'mine' } } });
    const out = contexts.run(() => withOutboundContext(clients.mqtt5!, own), { correlationId: 'cid-3' }) as MqttRecord;
    expect(out.options?.qos).toBe(1);
    expect(out.options?.properties?.userProperties).toMatchObject({ 'x-request-id': 'mine' });
    expect(out.options?.properties?.userProperties?.traceparent).toBeDefined();
    const env = contexts.run(() => withOutboundContext(clients.mqtt4!, { a: 1 }), { correlationId: 'cid-4' });
    expect(isEnvelope(env)).toBe(true);
    expect(env).toMatchObject({ data: { a: 1 }, [CONTEXT_ENVELOPE_KEY]: { 'x-request-id': 'cid-4' } });
  });

  it('the library detects packet metadata exactly where the test does (NestJS 12: TCP and Redis; NestJS 11: neither)', () => {
    expect(packetMetadataSupport).toEqual(hasPacketMetadata);
  });

  it('TCP/Redis: the payload is left alone and the context goes into packet.metadata (NestJS 12), else the envelope (11)', () => {
    for (const client of [clients.tcp!, clients.redis!]) {
      const payload = { a: 1 };
      const out = contexts.run(() => withOutboundContext(client, payload), { correlationId: 'cid-pm' });
      const packet = contexts.run(() => withPacketMetadata<Pkt>(client, { pattern: 'p', data: payload }), { correlationId: 'cid-pm' }) as { metadata?: Record<string, string> };
      if (hasPacketMetadata.tcp) {
        expect(out).toBe(payload);
        expect(packet.metadata).toMatchObject({ 'x-request-id': 'cid-pm' });
        expect(packet.metadata?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
      } else {
        expect(out).toMatchObject({ data: payload, [CONTEXT_ENVELOPE_KEY]: { 'x-request-id': 'cid-pm' } });
        expect(packet.metadata).toBeUndefined();
      }
    }
  });

  it('packet metadata: the user\'s own metadata wins and is not mutated; odd metadata, envelopes and other clients are left alone', () => {
    const run = <T>(fn: () => T): T => contexts.run(fn, { correlationId: 'cid-merge' });
    const mine = { 'x-request-id': 'mine', other: 'kept' };
    const merged = run(() => withPacketMetadata<Pkt>(clients.tcp!, { pattern: 'p', data: 1, metadata: mine }));
    if (hasPacketMetadata.tcp) {
      expect(merged.metadata).toMatchObject({ 'x-request-id': 'mine', other: 'kept' });
      expect((merged.metadata as Record<string, string>).traceparent).toBeDefined();
    }
    expect(mine).toEqual({ 'x-request-id': 'mine', other: 'kept' });
    expect(run(() => withPacketMetadata<Pkt>(clients.tcp!, { pattern: 'p', data: 1, metadata: 'odd' })).metadata).toBe('odd');
    const envelope = { [CONTEXT_ENVELOPE_KEY]: { 'x-request-id': 'forwarded' }, data: 1 };
    expect(run(() => withPacketMetadata<Pkt>(clients.tcp!, { pattern: 'p', data: envelope })).metadata).toBeUndefined();
    for (const name of ['rmq', 'nats', 'mqtt5', 'mqtt4']) {
      expect(run(() => withPacketMetadata<Pkt>(clients[name]!, { pattern: 'p', data: 1 })).metadata).toBeUndefined();
    }
    expect(withPacketMetadata<Pkt>(clients.tcp!, { pattern: 'p', data: 1 }).metadata).toBeUndefined();
    expect(run(() => withPacketMetadata(clients.tcp!, null))).toBeNull();
  });

  it('forceEnvelope is validated: a wrong type or an unknown option is a ContextConfigError', () => {
    for (const bad of [{ forceEnvelope: 'yes' }, { forceEnvelope: 1 }, { envelope: true }, 'yes', [true]]) {
      expect(() => ContextMicroservicesModule.forRoot(bad as never)).toThrow(ContextConfigError);
      expect(() => propagateContext(ClientProxyFactory.create({ transport: Transport.TCP }) as ClientProxy, bad as never)).toThrow(ContextConfigError);
      expect(() => propagateGlobalClients(bad as never)).toThrow(ContextConfigError);
    }
    expect(() => ContextMicroservicesModule.forRoot({ forceEnvelope: 'yes' as never })).toThrow(
      'ContextMicroservicesModule.forRoot(): option forceEnvelope must be true or false, got string "yes"',
    );
    expect(() => ContextMicroservicesModule.forRoot({ envelope: true } as never)).toThrow('unknown option "envelope"');
    for (const good of [undefined, {}, { forceEnvelope: false }, { forceEnvelope: true }]) {
      expect(() => ContextMicroservicesModule.forRoot(good)).not.toThrow();
    }
  });

  it('TCP: an envelope is never wrapped twice', () => {
    const once = contexts.run(() => withOutboundContext(clients.tcp!, 'text'), { correlationId: 'cid-5' });
    const twice = contexts.run(() => withOutboundContext(clients.tcp!, once), { correlationId: 'cid-6' });
    expect(twice).toBe(once);
  });

  it('only an exact envelope is unwrapped; a user payload with one of its keys is left alone', () => {
    expect(isEnvelope({ [CONTEXT_ENVELOPE_KEY]: {}, data: 1 })).toBe(true);
    expect(isEnvelope({ [CONTEXT_ENVELOPE_KEY]: {}, data: 1, more: 2 })).toBe(false);
    expect(isEnvelope({ data: 1 })).toBe(false);
    expect(isEnvelope([CONTEXT_ENVELOPE_KEY, 'data'])).toBe(false);
    expect(isEnvelope(null)).toBe(false);
  });

  it('the extractor ignores wrong types, empty, huge and prototype keys; reads only the names it knows', () => {
    const bag = JSON.parse(
      `{"traceparent":42,"tracestate":"${'x'.repeat(9000)}","baggage":"","x-request-id":["ok-id", 7],"__proto__":{"x":1},"other":"no"}`,
    ) as unknown;
    const carrier = extractCarrier(undefined, { [ENVELOPE_CARRIER]: bag }, NAMES);
    expect(carrier).toEqual(Object.assign(Object.create(null) as object, { 'x-request-id': 'ok-id' }));
    expect(Object.getPrototypeOf(carrier)).toBeNull();
    expect(extractCarrier(undefined, { [ENVELOPE_CARRIER]: null }, NAMES)).toBeUndefined();
    expect(extractCarrier(undefined, { [ENVELOPE_CARRIER]: 'garbage' }, NAMES)).toBeUndefined();
    expect(extractCarrier(undefined, { getHeaders: () => { throw new Error('boom'); } }, NAMES)).toBeUndefined();
    expect(extractCarrier(undefined, 'not an object', NAMES)).toBeUndefined();
  });

  it('packet metadata (getMetadata): own string values only; malformed is ignored; per header before the envelope', () => {
    const bad = JSON.parse(
      `{"traceparent":42,"tracestate":"${'x'.repeat(20_000)}","baggage":["tenant=evil"],"x-request-id":"","__proto__":{"x-correlation-id":"proto"}}`,
    ) as unknown;
    expect(extractCarrier(undefined, { getMetadata: () => bad }, NAMES)).toBeUndefined();
    expect(extractCarrier(undefined, { getMetadata: () => ['x-request-id'] }, NAMES)).toBeUndefined();
    expect(extractCarrier(undefined, { getMetadata: () => 'x-request-id' }, NAMES)).toBeUndefined();
    expect(extractCarrier(undefined, { getMetadata: () => Object.create({ 'x-request-id': 'inherited' }) as object }, NAMES)).toBeUndefined();
    expect(extractCarrier(undefined, { getMetadata: () => ({ 'x-request-id': 'meta' }) }, NAMES)).toEqual(
      Object.assign(Object.create(null) as object, { 'x-request-id': 'meta' }),
    );
    const both = {
      getMetadata: () => ({ 'x-request-id': 'meta', traceparent: 42 }),
      [ENVELOPE_CARRIER]: { 'x-request-id': 'env', traceparent: 'tp-env' },
    };
    expect({ ...extractCarrier(undefined, both, NAMES) }).toEqual({ 'x-request-id': 'meta', traceparent: 'tp-env' });
    const throwing = { getMetadata: () => { throw new Error('boom'); }, [ENVELOPE_CARRIER]: { 'x-request-id': 'env' } };
    expect({ ...extractCarrier(undefined, throwing, NAMES) }).toEqual({ 'x-request-id': 'env' });
  });

  it('correlation id headers keep every usable candidate in priority order; trace headers the first usable value', () => {
    const IDS = new Set(['x-request-id', 'x-correlation-id']);
    const plain = (carrier: unknown) => ({ ...(carrier as object) });
    // Packet metadata before the envelope; unusable values (wrong type, empty, too long) are dropped.
    const both = {
      getMetadata: () => ({ 'x-request-id': 'bad id', 'x-correlation-id': 42, traceparent: 'tp-meta' }),
      [ENVELOPE_CARRIER]: { 'x-request-id': ['env-1', 7, '', 'env-2'], 'x-correlation-id': 'c-env', traceparent: 'tp-env' },
    };
    expect(plain(extractCarrier(undefined, both, NAMES, IDS))).toEqual({
      'x-request-id': ['bad id', 'env-1', 'env-2'],
      'x-correlation-id': 'c-env',
      traceparent: 'tp-meta',
    });
    // A source that throws contributes nothing; the others still do.
    const throwing = { getMetadata: () => { throw new Error('boom'); }, [ENVELOPE_CARRIER]: { 'x-request-id': 'env' } };
    expect(plain(extractCarrier(undefined, throwing, NAMES, IDS))).toEqual({ 'x-request-id': 'env' });
    // gRPC Metadata: every value of a repeated key for ids, the first for trace headers.
    const grpcLike = { get: (name: string) => (name === 'traceparent' ? ['tp-1', 'tp-2'] : name === 'x-request-id' ? ['a b', 'ok'] : []), getMap: () => ({}) };
    expect(plain(extractCarrier({}, grpcLike, NAMES, IDS))).toEqual({ 'x-request-id': ['a b', 'ok'], traceparent: 'tp-1' });
    // NATS MsgHdrs: values() for ids (get() gives only the first value of a repeated header).
    const nats = natsHeaders();
    nats.append('x-request-id', 'bad id');
    nats.append('x-request-id', 'nats-ok');
    nats.append('traceparent', 'tp-n1');
    nats.append('traceparent', 'tp-n2');
    expect(plain(extractCarrier({}, { getHeaders: () => nats }, NAMES, IDS))).toEqual({ 'x-request-id': ['bad id', 'nats-ok'], traceparent: 'tp-n1' });
    // At most 16 candidates, however many values arrive.
    const many = Array.from({ length: 10_000 }, (_, i) => `id-${i}`);
    const capped = extractCarrier(undefined, { [ENVELOPE_CARRIER]: { 'x-request-id': many, 'x-correlation-id': many } }, NAMES, IDS);
    expect(capped?.['x-request-id']).toEqual(many.slice(0, 16));
    expect(capped?.['x-correlation-id']).toEqual(many.slice(0, 16));
    // Without `ids` every header keeps the first usable value, as before.
    expect(plain(extractCarrier(undefined, both, NAMES))).toEqual({ 'x-request-id': 'bad id', 'x-correlation-id': 'c-env', traceparent: 'tp-meta' });
  });

  it('a broker that is down fails the suite with its name and start command', async () => {
    const port = await freePort();
    await expect(requireBroker({ name: 'Redis', host: '127.0.0.1', port, start: 'redis-server --daemonize yes' })).rejects.toThrow(
      `Redis is not reachable on 127.0.0.1:${port} (ECONNREFUSED) — start it with: redis-server --daemonize yes`,
    );
  });
});
