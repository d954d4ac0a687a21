import 'reflect-metadata';
import { connect } from 'node:net';
import { Controller, Module, type INestMicroservice, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientProxyFactory,
  Ctx,
  EventPattern,
  MessagePattern,
  Payload,
  Transport,
  type ClientOptions,
  ClientProxy,
  type MicroserviceOptions,
} from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { Redis } from 'ioredis';
import { firstValueFrom } from 'rxjs';
import { ContextModule, ContextService } from '../../src/index.js';
import { ContextMicroservicesModule, propagateContext } from '../../src/integrations/microservices/index.js';
import { brokers, freePort, requireBroker, uniqueName } from '../utils/brokers.js';
import {
  carriage,
  defaultRoute,
  EventLog,
  hasPacketMetadata,
  MALFORMED_METADATA_JSON,
  TransportContext,
  TRACE,
  PARENT,
  UUID,
} from './fixtures/harness.js';

/** What the receiver's handlers saw. */
interface Received {
  payload: unknown;
  correlationId: string | undefined;
  traceId: string | undefined;
  parentId: string | undefined;
  carriedBy: string;
  /** The packet metadata's own keys and short values (NestJS 12; `undefined` on 11). */
  metadata: Record<string, string> | undefined;
}

const log = new EventLog<Received>();

/** NestJS 12's dispatch hook, typed structurally so this file also compiles against NestJS 11. */
interface Hooked {
  setOnDispatchHook(hook: (packet: { pattern: unknown; data: unknown; metadata?: unknown }) => void): void;
}

function received(payload: unknown, context: ContextService<TransportContext>, transport: unknown): Received {
  const getMetadata = (transport as { getMetadata?: () => unknown }).getMetadata;
  const raw = typeof getMetadata === 'function' ? getMetadata.call(transport) : undefined;
  let metadata: Record<string, string> | undefined;
  if (raw !== null && typeof raw === 'object') {
    metadata = {};
    for (const [key, value] of Object.entries(raw)) metadata[key] = typeof value === 'string' ? value.slice(0, 64) : typeof value;
  }
  return {
    payload,
    correlationId: context.correlationId,
    traceId: context.trace?.traceId,
    parentId: context.trace?.parentId,
    carriedBy: carriage(transport),
    metadata,
  };
}

function receiverModule(prefix: string): Type {
  @Controller()
  class ReceiverController {
    constructor(private readonly context: ContextService<TransportContext>) {}

    @MessagePattern(`${prefix}.seen`)
    seen(@Payload() payload: unknown, @Ctx() transport: unknown): Received {
      return received(payload, this.context, transport);
    }

    @EventPattern(`${prefix}.event`)
    event(@Payload() payload: object, @Ctx() transport: unknown): void {
      log.record((payload as { key: string }).key, received(payload, this.context, transport));
    }
  }

  @Module({ imports: [ContextModule.forRoot(TransportContext), ContextMicroservicesModule.forRoot()], controllers: [ReceiverController] })
  class ReceiverModule {}
  return ReceiverModule;
}

/** One transport whose NestJS 12 server reads `packet.metadata`. */
interface Spec {
  name: string;
  transport: 'tcp' | 'redis';
  options(): Promise<ClientOptions & MicroserviceOptions>;
  /** Publishes one raw JSON event packet as a non-Nest producer would. */
  raw(pattern: string, json: string): Promise<void>;
  close?(): Promise<void>;
}

let tcpPort = 0;
let redis: Redis | undefined;

const specs: Spec[] = [
  {
    name: 'TCP',
    transport: 'tcp',
    async options() {
      tcpPort = await freePort();
      return { transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } };
    },
    raw: (_pattern, json) =>
      new Promise<void>((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port: tcpPort }, () => socket.end(`${json.length}#${json}`, () => resolve()));
        socket.once('error', reject);
      }),
  },
  {
    name: 'Redis',
    transport: 'redis',
    async options() {
      await requireBroker('redis');
      return { transport: Transport.REDIS, options: { host: brokers.redis.host, port: brokers.redis.port } };
    },
    async raw(pattern, json) {
      redis ??= new Redis({ host: brokers.redis.host, port: brokers.redis.port });
      await redis.publish(pattern, json);
    },
    async close() {
      await redis?.quit();
      redis = undefined;
    },
  },
];

for (const spec of specs) {
  const supported = hasPacketMetadata[spec.transport];
  /**
   * Tests of NestJS 12's dispatch hook. NestJS 11 has no hook (nothing to keep or to break): there
   * the test checks exactly that, so the envelope path is the one its other tests cover.
   */
  const itWithHook = (name: string, fn: () => Promise<void>) =>
    supported
      ? it(name, fn)
      : it(`${name} (NestJS 11: there is no dispatch hook)`, () => {
          expect(typeof (ClientProxy.prototype as unknown as Partial<Hooked>).setOnDispatchHook).toBe('undefined');
        });

  describe(`${spec.name}: packet metadata (NestJS 12) and the envelope reach one receiver alike`, () => {
    const prefix = uniqueName(`pm.${spec.transport}`);
    let options: ClientOptions & MicroserviceOptions;
    let server: INestMicroservice;
    let contexts: ContextService<TransportContext>;
    let closeSender: () => Promise<void>;
    const clients: ClientProxy[] = [];

    function newClient(): ClientProxy {
      const client = ClientProxyFactory.create(options as ClientOptions) as ClientProxy;
      clients.push(client);
      return client;
    }

    function seen(client: ClientProxy, correlationId: string, payload: unknown = { hello: correlationId }): Promise<{ reply: Received; traceId: string | undefined }> {
      return contexts.run(
        async () => ({ reply: await firstValueFrom(client.send<Received>(`${prefix}.seen`, payload)), traceId: contexts.trace?.traceId }),
        { correlationId },
      );
    }

    beforeAll(async () => {
      options = await spec.options();
      server = await NestFactory.createMicroservice<MicroserviceOptions>(receiverModule(prefix), { ...options, logger: false } as never);
      await server.listen();
      const sender = await Test.createTestingModule({ imports: [ContextModule.forRoot(TransportContext)] }).compile();
      await sender.init();
      contexts = sender.get(ContextService);
      closeSender = () => sender.close();
    }, 30_000);

    afterAll(async () => {
      for (const client of clients) await client.close();
      await spec.close?.();
      await server?.close();
      await closeSender?.();
    });

    it(`by default the context travels as ${defaultRoute(spec.transport)} on the installed Nest`, async () => {
      const { reply, traceId } = await seen(newClient(), 'default-1');
      expect(reply).toMatchObject({ payload: { hello: 'default-1' }, correlationId: 'default-1', traceId, carriedBy: defaultRoute(spec.transport) });
      expect(reply.parentId).toMatch(/^[0-9a-f]{16}$/);
      if (supported) expect(reply.metadata).toMatchObject({ 'x-request-id': 'default-1' });
      else expect(reply.metadata).toBeUndefined();
    });

    it('forRoot({ forceEnvelope: true }) sends envelopes process-wide while that app runs; the receiver reads them', async () => {
      const client = newClient();
      const forcing = await Test.createTestingModule({
        imports: [ContextModule.forRoot(TransportContext), ContextMicroservicesModule.forRoot({ forceEnvelope: true })],
      }).compile();
      await forcing.init();
      try {
        const { reply, traceId } = await seen(client, 'forced-1');
        expect(reply).toMatchObject({ payload: { hello: 'forced-1' }, correlationId: 'forced-1', traceId, carriedBy: 'envelope' });
        expect(reply.metadata).toBeUndefined();
      } finally {
        await forcing.close();
      }
      // Closing the app that asked for it gives the default back.
      const { reply } = await seen(client, 'forced-2');
      expect(reply).toMatchObject({ correlationId: 'forced-2', carriedBy: defaultRoute(spec.transport) });
    });

    it('propagateContext(client, { forceEnvelope: true }) forces the envelope on that client only', async () => {
      const forced = propagateContext(newClient(), { forceEnvelope: true });
      const other = newClient();
      const [a, b] = await Promise.all([seen(forced, 'per-client-env'), seen(other, 'per-client-default')]);
      expect(a.reply).toMatchObject({ correlationId: 'per-client-env', traceId: a.traceId, carriedBy: 'envelope' });
      expect(b.reply).toMatchObject({ correlationId: 'per-client-default', traceId: b.traceId, carriedBy: defaultRoute(spec.transport) });
    });

    itWithHook("a user's own setOnDispatchHook metadata is kept and wins on conflict; the context fills in the rest", async () => {
      const client = newClient();
      const mine = { 'x-request-id': 'from-hook', 'x-app': 'kept' };
      (client as unknown as Hooked).setOnDispatchHook((packet) => {
        packet.metadata = mine;
      });
      const { reply, traceId } = await seen(client, 'context-id');
      expect(reply.carriedBy).toBe('packet-metadata');
      expect(reply.correlationId).toBe('from-hook');
      expect(reply.traceId).toBe(traceId);
      expect(reply.metadata).toMatchObject({ 'x-request-id': 'from-hook', 'x-app': 'kept' });
      expect(reply.metadata?.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[0-3]$`));
      // The user's object is not mutated.
      expect(mine).toEqual({ 'x-request-id': 'from-hook', 'x-app': 'kept' });
    });

    itWithHook('a dispatch hook that replaces metadata with something unusable cannot break the send', async () => {
      const client = newClient();
      (client as unknown as Hooked).setOnDispatchHook((packet) => {
        packet.metadata = 'not an object';
      });
      const { reply } = await seen(client, 'odd-hook');
      expect(reply.payload).toEqual({ hello: 'odd-hook' });
      expect(reply.correlationId).toMatch(UUID);
    });

    it('the context of the send() call is the one carried, even when subscribed elsewhere', async () => {
      const client = newClient();
      const reply$ = contexts.run(() => client.send<Received>(`${prefix}.seen`, { late: true }), { correlationId: 'sent-here' });
      const reply = await contexts.run(() => firstValueFrom(reply$), { correlationId: 'subscribed-here' });
      expect(reply.correlationId).toBe('sent-here');
    });

    it('malformed packet.metadata (wrong types, 20 KB values, __proto__) is ignored: fresh context, the handler runs', async () => {
      const key = uniqueName('bad-meta');
      await spec.raw(`${prefix}.event`, `{"pattern":"${prefix}.event","metadata":${MALFORMED_METADATA_JSON},"data":{"key":"${key}"}}`);
      const got = await log.waitFor(key);
      expect(got.payload).toEqual({ key });
      expect(got.correlationId).toMatch(UUID);
      expect(got.parentId).toBeUndefined();
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });

    it('packet.metadata that is not an object (a string, an array) is ignored', async () => {
      for (const metadata of ['"x-request-id"', '["x-request-id","abc"]']) {
        const key = uniqueName('not-object');
        await spec.raw(`${prefix}.event`, `{"pattern":"${prefix}.event","metadata":${metadata},"data":{"key":"${key}"}}`);
        const got = await log.waitFor(key);
        expect(got.payload).toEqual({ key });
        expect(got.correlationId).toMatch(UUID);
      }
    });

    it('per header, packet.metadata is read before the envelope; unusable metadata values fall back to it', async () => {
      const key = uniqueName('both');
      const envelope = { 'x-request-id': 'from-envelope', traceparent: `00-${TRACE}-${PARENT}-01` };
      const metadata = { 'x-request-id': 'from-metadata', traceparent: 42 };
      await spec.raw(
        `${prefix}.event`,
        JSON.stringify({ pattern: `${prefix}.event`, metadata, data: { __nestjs_context__: envelope, data: { key } } }),
      );
      const got = await log.waitFor(key);
      expect(got.payload).toEqual({ key });
      // NestJS 11 never sees packet.metadata: the envelope alone counts there.
      expect(got.correlationId).toBe(supported ? 'from-metadata' : 'from-envelope');
      expect(got.traceId).toBe(TRACE);
      expect(got.parentId).toBe(PARENT);
    });

    /** Publishes one event whose packet.metadata and envelope carry the given ids; returns what the handler saw. */
    async function conflicting(metadataId: string, envelopeId: string): Promise<Received> {
      const key = uniqueName('conflict');
      const metadata = { 'x-request-id': metadataId };
      const envelope = { 'x-request-id': envelopeId };
      await spec.raw(`${prefix}.event`, JSON.stringify({ pattern: `${prefix}.event`, metadata, data: { __nestjs_context__: envelope, data: { key } } }));
      const got = await log.waitFor(key);
      expect(got.payload).toEqual({ key });
      return got;
    }

    it('an invalid id in packet.metadata does not hide a valid one in the envelope: the first valid id wins', async () => {
      const got = await conflicting('bad id with spaces', 'envelope-id-1');
      expect(got.correlationId).toBe('envelope-id-1');
    });

    it('valid ids in both packet.metadata and the envelope: packet.metadata wins (NestJS 11: only the envelope exists)', async () => {
      const got = await conflicting('metadata-id-2', 'envelope-id-2');
      expect(got.correlationId).toBe(supported ? 'metadata-id-2' : 'envelope-id-2');
    });
  });
}
