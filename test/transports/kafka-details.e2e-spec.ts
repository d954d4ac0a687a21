import 'reflect-metadata';
import { Controller, Module, type INestMicroservice, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, EventPattern, KafkaContext, MessagePattern, Payload, ServerKafka, type ClientKafka, type ClientProxy, type MicroserviceOptions } from '@nestjs/microservices';
import { firstValueFrom } from 'rxjs';
import { ContextModule, ContextService } from '../../src/index.js';
import { ContextMicroservicesModule, propagateContext } from '../../src/integrations/microservices/index.js';
import { uniqueName } from '../utils/brokers.js';
import { EventLog, serverContextOptions, TransportContext } from './fixtures/harness.js';
import { KafkaStandin, standinClientClass, standinServer } from './fixtures/kafka-standin.js';

/*
 * Kafka specifics through Nest's real ClientKafka/ServerKafka on the in-process kafkajs stand-in
 * (no broker): what goes on the wire next to Nest's own `kafka_*` headers, the caller's own
 * message headers, `emitBatch`, and (NestJS 12) RegExp patterns.
 */

/** What a handler saw of one message. */
interface Saw {
  ref: string;
  correlationId: string | undefined;
  traceId: string | undefined;
  parentId: string | undefined;
  tenant: string | undefined;
  /** The message's headers as `KafkaContext#getMessage()` shows them. */
  headers: Record<string, unknown>;
  topic: string;
}

const seen = new EventLog<Saw>();

/** NestJS 12's ServerKafka registers RegExp patterns itself (NestJS 11 has no RegExp patterns for Kafka). */
const regexPatterns = Object.prototype.hasOwnProperty.call(ServerKafka.prototype, 'addHandler');

function saw(context: ContextService<TransportContext>, payload: unknown, kafka: KafkaContext): Saw {
  const trace = context.trace;
  return {
    ref: (payload as { ref: string }).ref,
    correlationId: context.correlationId,
    traceId: trace?.traceId,
    parentId: trace?.parentId,
    tenant: context.get().tenant,
    headers: { ...kafka.getMessage().headers },
    topic: kafka.getTopic(),
  };
}

function serverModule(prefix: string): Type {
  @Controller()
  class DetailsController {
    constructor(private readonly context: ContextService<TransportContext>) {}

    @EventPattern(`${prefix}.wire`)
    wire(@Payload() payload: object, @Ctx() kafka: unknown): void {
      const s = saw(this.context, payload, kafka as KafkaContext);
      seen.record(s.ref, s);
    }

    @MessagePattern(`${prefix}.ask`)
    ask(@Payload() payload: unknown, @Ctx() kafka: KafkaContext): Saw {
      return saw(this.context, payload, kafka);
    }
  }

  @Controller()
  class RegexController {
    constructor(private readonly context: ContextService<TransportContext>) {}

    @EventPattern(new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.re\\.`))
    any(@Payload() payload: object, @Ctx() kafka: unknown): void {
      const s = saw(this.context, payload, kafka as KafkaContext);
      seen.record(s.ref, s);
    }
  }

  @Module({
    imports: [ContextModule.forRoot(TransportContext, serverContextOptions), ContextMicroservicesModule.forRoot()],
    controllers: regexPatterns ? [DetailsController, RegexController] : [DetailsController],
  })
  class DetailsModule {}
  return DetailsModule;
}

const text = (value: unknown): string | undefined => (Buffer.isBuffer(value) ? value.toString('utf8') : undefined);

describe('Kafka specifics (Nest ClientKafka/ServerKafka on the kafkajs stand-in)', () => {
  const prefix = uniqueName('kafka.details');
  const standin = new KafkaStandin({ partitions: 3 });
  let server: INestMicroservice;
  let client: ClientKafka;
  let contexts: ContextService<TransportContext>;

  beforeAll(async () => {
    const options = { client: { clientId: prefix, brokers: ['kafka-standin:9092'] }, consumer: { groupId: prefix }, run: { partitionsConsumedConcurrently: 3 } };
    if (regexPatterns) standin.createTopic(`${prefix}.re.created`);
    server = await NestFactory.createMicroservice<MicroserviceOptions>(serverModule(prefix), { strategy: standinServer(standin, options), logger: false });
    await server.listen();
    contexts = server.get(ContextService);
    const ClientClass = standinClientClass(standin, [`${prefix}.ask`]);
    client = new ClientClass(options);
    await client.connect();
  });

  afterAll(async () => {
    await client?.close();
    await server?.close();
    expect(standin.errors).toEqual([]);
  });

  /** Runs `fn` in a context with correlation id `kafka-1` and tenant `acme` (baggage); returns its result and the caller's trace id. */
  async function inContext<R>(fn: () => Promise<R>): Promise<{ result: R; traceId: string }> {
    return contexts.run(async () => {
      contexts.get().tenant = 'acme';
      const traceId = contexts.trace!.traceId;
      return { result: await fn(), traceId };
    }, { correlationId: 'kafka-1' });
  }

  it('send(): the context goes in the message headers next to Nest\'s kafka_* headers; the reply carries only Nest\'s', async () => {
    const { result: reply, traceId } = await inContext(() => firstValueFrom(client.send<Saw>(`${prefix}.ask`, { ref: 'ask-1' })));
    expect(reply).toMatchObject({ ref: 'ask-1', correlationId: 'kafka-1', traceId, tenant: 'acme' });
    expect(reply.parentId).toMatch(/^[0-9a-f]{16}$/);
    // On the wire (as a consumer receives it): Buffers, ours and Nest's side by side.
    const [request] = standin.read(`${prefix}.ask`).filter((m) => text(m.value)?.includes('ask-1'));
    const wire = Object.fromEntries(Object.entries(request!.headers).map(([name, value]) => [name, text(value)]));
    expect(Object.keys(wire).sort()).toEqual(['baggage', 'kafka_correlationId', 'kafka_replyPartition', 'kafka_replyTopic', 'traceparent', 'x-request-id']);
    expect(wire).toMatchObject({ 'x-request-id': 'kafka-1', baggage: 'tenant=acme', kafka_replyTopic: `${prefix}.ask.reply`, kafka_replyPartition: '0' });
    expect(wire.traceparent).toMatch(new RegExp(`^00-${traceId}-${reply.parentId!}-0[0-3]$`));
    // The handler's KafkaContext shows them as Nest's parser decoded them: strings.
    expect(reply.headers).toMatchObject({ traceparent: wire.traceparent, 'x-request-id': 'kafka-1', kafka_replyTopic: `${prefix}.ask.reply` });
    expect(reply.topic).toBe(`${prefix}.ask`);
    const replies = standin.read(`${prefix}.ask.reply`);
    expect(replies.length).toBeGreaterThan(0);
    for (const m of replies) expect(Object.keys(m.headers).filter((name) => !name.startsWith('kafka_'))).toEqual([]);
  });

  it('a Kafka message { key, value, headers }: the caller\'s own headers win, its key stays, its object is not changed', async () => {
    const message = { key: 'order-7', value: { ref: 'own-1' }, headers: { 'x-request-id': 'own-id', custom: 'yes' } };
    const before = structuredClone(message);
    const { traceId } = await inContext(() => firstValueFrom(client.emit(`${prefix}.wire`, message), { defaultValue: undefined }));
    const got = await seen.waitFor('own-1');
    expect(got).toMatchObject({ correlationId: 'own-id', traceId, tenant: 'acme' });
    expect(got.headers).toMatchObject({ 'x-request-id': 'own-id', custom: 'yes', baggage: 'tenant=acme' });
    expect(message).toEqual(before);
    const [wire] = standin.read(`${prefix}.wire`).filter((m) => text(m.value)?.includes('own-1'));
    expect(text(wire!.key)).toBe('order-7');
  });

  it('emitBatch(): every message carries the context, each with its own parent id', async () => {
    const refs = ['batch-1', 'batch-2', 'batch-3'];
    const messages = [{ ref: refs[0] }, { value: { ref: refs[1] } }, { value: { ref: refs[2] }, headers: { custom: 'kept' } }];
    const { traceId } = await inContext(() => firstValueFrom(client.emitBatch(`${prefix}.wire`, { messages }), { defaultValue: undefined }));
    const got = await Promise.all(refs.map((ref) => seen.waitFor(ref)));
    for (const s of got) expect(s).toMatchObject({ correlationId: 'kafka-1', traceId, tenant: 'acme' });
    expect(new Set(got.map((s) => s.parentId)).size).toBe(3);
    expect(got[2]?.headers.custom).toBe('kept');
  });

  it('outside any context: no context headers, a fresh context on the other side', async () => {
    await firstValueFrom(client.emit(`${prefix}.wire`, { ref: 'outside-1' }), { defaultValue: undefined });
    const got = await seen.waitFor('outside-1');
    expect(got.correlationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(got.parentId).toBeUndefined();
    expect(Object.keys(got.headers)).toEqual([]);
  });

  it('propagateContext(client) also covers emitBatch on that client', () => {
    const ClientClass = standinClientClass(standin);
    // (propagateContext's parameter type does not accept Nest 12's concrete client classes as they are typed: cast, as for the other transports.)
    const own = propagateContext(new ClientClass({ client: { brokers: ['kafka-standin:9092'] } }) as unknown as ClientProxy);
    expect(Object.prototype.hasOwnProperty.call(own, 'emitBatch')).toBe(true);
    expect(Object.prototype.hasOwnProperty.call(own, 'send')).toBe(true);
  });

  it(regexPatterns ? 'NestJS 12 RegExp patterns: the handler runs in the message\'s context' : 'NestJS 11 has no RegExp Kafka patterns: nothing to patch on ServerKafka', async () => {
    if (!regexPatterns) {
      expect(Object.prototype.hasOwnProperty.call(ServerKafka.prototype, 'addHandler')).toBe(false);
      return;
    }
    const { traceId } = await inContext(() => firstValueFrom(client.emit(`${prefix}.re.created`, { ref: 're-1' }), { defaultValue: undefined }));
    const got = await seen.waitFor('re-1');
    expect(got).toMatchObject({ correlationId: 'kafka-1', traceId, tenant: 'acme', topic: `${prefix}.re.created` });
  });
});
