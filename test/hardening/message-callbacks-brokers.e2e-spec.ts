/**
 * Issue #12, deliverable 1, on the broker transports (real Redis and NATS on loopback): an option
 * callback that fails on an inbound message never takes the process down. The message is handled in
 * a fresh context with a valid default id, the failure is logged once with its stack through Nest's
 * logger, and the next message is served normally. The TCP case is in message-callbacks.e2e-spec.ts.
 *
 * The messages come from raw broker clients (as a producer that does not use this library): Redis
 * packets carry the id in NestJS 12's `packet.metadata` and in the fallback envelope (NestJS 11
 * reads that), NATS messages in their headers.
 */
import 'reflect-metadata';
import type { IncomingMessage } from 'node:http';
import { connect as natsConnect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, Payload, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { Redis } from 'ioredis';
import { ContextModule, ContextService, currentContext, type ContextModuleOptions } from 'nestjs-context';
import { ContextMicroservicesModule } from 'nestjs-context/microservices';
import { CONTEXT_ENVELOPE_KEY } from '../../src/integrations/microservices/envelope.js';
import { MyContext } from '../fixtures/app-context.js';
import { Log } from '../entrypoints/log.js';
import { brokers, requireBroker, subscriptionsSettled, uniqueName } from '../utils/brokers.js';
import { CaptureLogger } from '../utils/capture-logger.js';
import { DEFAULT_ID } from '../utils/ids.js';
import { throwingGenerate, throwingValidate } from './failing-callbacks.js';

/** What an event handler saw: its id through `currentContext` and through the app's `ContextService`. */
interface Seen {
  key: string;
  current: string;
  service: string | undefined;
}

const seen = new Log<Seen>();

/** How one broker is reached: the server options, and a raw producer that publishes one event. */
interface BrokerCase {
  name: string;
  broker: 'redis' | 'nats';
  server(): MicroserviceOptions;
  /** Publishes an event `{ ref }` on `pattern`, with `headers` as the message's context metadata (none when empty). */
  publish(pattern: string, ref: string, headers: Record<string, string>): Promise<void>;
  close(): Promise<void>;
}

let redis: Redis | undefined;
let nats: NatsConnection | undefined;

const cases: BrokerCase[] = [
  {
    name: 'Redis',
    broker: 'redis',
    server: () => ({ transport: Transport.REDIS, options: { host: brokers.redis.host, port: brokers.redis.port } }),
    async publish(pattern, ref, headers) {
      redis ??= new Redis({ host: brokers.redis.host, port: brokers.redis.port });
      const empty = Object.keys(headers).length === 0;
      const packet = empty
        ? { pattern, data: { ref } }
        : { pattern, metadata: headers, data: { [CONTEXT_ENVELOPE_KEY]: headers, data: { ref } } };
      await redis.publish(pattern, JSON.stringify(packet));
    },
    async close() {
      await redis?.quit();
      redis = undefined;
    },
  },
  {
    name: 'NATS',
    broker: 'nats',
    server: () => ({ transport: Transport.NATS, options: { servers: [`nats://${brokers.nats.host}:${brokers.nats.port}`] } }),
    async publish(pattern, ref, headers) {
      nats ??= await natsConnect({ servers: [`nats://${brokers.nats.host}:${brokers.nats.port}`] });
      const h = natsHeaders();
      for (const [name, value] of Object.entries(headers)) h.set(name, value);
      nats.publish(pattern, JSON.stringify({ pattern, data: { ref } }), Object.keys(headers).length === 0 ? {} : { headers: h });
      await nats.flush();
    },
    async close() {
      await nats?.close();
      nats = undefined;
    },
  },
];

/** The failing callbacks of the reproductions. */
let trustCalls = 0;
const throwingTrust: ContextModuleOptions<MyContext> = {
  trustInbound: (req: IncomingMessage) => {
    trustCalls++;
    return (req.headers['x-mesh-secret'] as string).startsWith('s3cret');
  },
};

describe.each(cases)('a failing option callback on a $name message gives a fresh context, never a crash', (broker) => {
  const logger = new CaptureLogger();
  let app: INestMicroservice | undefined;
  let pattern = '';

  beforeAll(() => requireBroker(broker.broker));
  afterAll(() => broker.close());

  afterEach(async () => {
    await app?.close();
    app = undefined;
    logger.errors.length = 0;
    trustCalls = 0;
  });

  async function boot(options: ContextModuleOptions<MyContext>): Promise<void> {
    pattern = uniqueName(`hardening.${broker.name}`);
    @Controller()
    class EventsController {
      constructor(private readonly context: ContextService<MyContext>) {}
      @EventPattern(pattern)
      handle(@Payload() payload: object): void {
        seen.push({ key: (payload as { ref: string }).ref, current: currentContext.correlationId as string, service: this.context.correlationId });
      }
    }
    @Module({ imports: [ContextModule.forRoot(MyContext, options), ContextMicroservicesModule.forRoot()], controllers: [EventsController] })
    class EventsModule {}
    app = await NestFactory.createMicroservice<MicroserviceOptions>(EventsModule, { ...broker.server(), logger } as never);
    await app.listen();
    await subscriptionsSettled(app, broker.broker);
  }

  /** Publishes one event and waits until its handler ran; returns what it saw. */
  async function deliver(headers: Record<string, string>): Promise<Seen> {
    const ref = uniqueName('ref');
    await broker.publish(pattern, ref, headers);
    const [one] = await seen.wait(ref, 1, 10_000);
    expect(one?.service).toBe(one?.current);
    return one as Seen;
  }

  it('validate throws on the inbound id: the handler runs with a fresh id, the failure is logged once with its stack, the next message is served', async () => {
    await boot(throwingValidate);
    const failed = await deliver({ 'x-request-id': '%' });
    expect(failed.current).toMatch(DEFAULT_ID);
    expect(logger.errors).toHaveLength(1);
    expect(logger.errors[0]).toMatch(/ContextModule: your correlationId.validate callback threw URIError/);
    expect(logger.errors[0]).toMatch(/\n\s+at /);
    expect((await deliver({ 'x-request-id': 'next-2' })).current).toBe('next-2');
    expect(logger.errors).toHaveLength(1);
  });

  it('generate throws: messages with and without metadata still run, each with a default id, each failure logged once', async () => {
    await boot(throwingGenerate);
    const bare = await deliver({});
    const traceOnly = await deliver({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
    for (const one of [bare, traceOnly]) expect(one.current).toMatch(DEFAULT_ID);
    expect(bare.current).not.toBe(traceOnly.current);
    expect(logger.errors).toHaveLength(2);
    for (const error of logger.errors) {
      expect(error).toMatch(/ContextModule: your correlationId.generate callback threw Error: id service down/);
      expect(error).toMatch(/\n\s+at /);
    }
    expect((await deliver({ 'x-request-id': 'given-3' })).current).toBe('given-3'); // an inbound id needs no generator
    expect(logger.errors).toHaveLength(2);
  });

  it('trustInbound throws: a message has no request to ask it about, so it is never called; the metadata is not trusted (fresh id), nothing fails', async () => {
    await boot(throwingTrust);
    const untrusted = await deliver({ 'x-request-id': 'from-mesh' });
    expect(untrusted.current).toMatch(DEFAULT_ID);
    const next = await deliver({ 'x-request-id': 'from-mesh-2' });
    expect(next.current).toMatch(DEFAULT_ID);
    expect(next.current).not.toBe(untrusted.current);
    expect(trustCalls).toBe(0);
    expect(logger.errors).toEqual([]);
  });
});
