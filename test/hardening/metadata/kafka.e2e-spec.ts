import type { INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { KafkaParser, type MicroserviceOptions } from '@nestjs/microservices';
import fc from 'fast-check';
import { uniqueName } from '../../utils/brokers.js';
import { KafkaStandin, standinServer, type StandinProducer } from '../../transports/fixtures/kafka-standin.js';
import {
  assertHostile,
  candidates,
  expectIdFrom,
  expectWellFormed,
  headerName,
  hostilePattern,
  hostileString,
  jsonValue,
  nextKey,
  POISON_JSON,
  received,
  receiverModule,
  runs,
  stringsIn,
} from './fixtures.js';

/*
 * Kafka: hostile message headers published through the in-process kafkajs stand-in
 * (test/transports/fixtures/kafka-standin.ts: kafkajs's encoding and decoding, no broker) to Nest's
 * real ServerKafka. On the wire a Kafka header is bytes, so what can reach a handler is what kafkajs
 * makes of a value (a Buffer; `String(value)` for anything else; one header per item of an array)
 * and what Nest's parser then makes of those bytes: a string, an object or array for a text that
 * looks like JSON, a Buffer that starts with a zero byte, or null.
 */

/** One header value as a kafkajs producer may be given it. */
const kafkaValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: hostileString },
  { weight: 2, arbitrary: fc.array(hostileString, { minLength: 1, maxLength: 4 }) },
  { weight: 2, arbitrary: jsonValue },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 24 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 1, arbitrary: fc.constantFrom('x-request-id', 'good-id', 'tenant=evil').map((s) => Buffer.concat([Buffer.from([0]), Buffer.from(s)])) },
  { weight: 1, arbitrary: fc.constantFrom(null, 42, true) },
);

type Entry = readonly [string, unknown];

const entry: fc.Arbitrary<Entry> = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(headerName, kafkaValue) },
  { weight: 1, arbitrary: fc.constantFrom(...POISON_JSON).map((json): Entry => ['__proto__', json]) },
);

/** Own-key headers from entries (later duplicates win, `__proto__` stays an own key). */
function ownObject(entries: readonly Entry[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of entries) Object.defineProperty(out, key, { value, enumerable: true, configurable: true, writable: true });
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The contract for one header value as `KafkaContext#getMessage().headers` holds it: a string as it
 * is, a Buffer as strict UTF-8 (else nothing), a list of Buffers (a repeated header as kafkajs
 * delivers it) item by item, anything else nothing.
 */
function contractValue(value: unknown): unknown {
  const text = (item: unknown): string | undefined => {
    if (typeof item === 'string') return item;
    if (!Buffer.isBuffer(item) || item.length > 3 * 8192) return undefined;
    try {
      return utf8.decode(item);
    } catch {
      return undefined;
    }
  };
  if (!Array.isArray(value)) return text(value);
  return value.every((item) => item === null || Buffer.isBuffer(item)) ? value.slice(0, 16).map(text) : undefined;
}

describe('hostile metadata over Kafka (headers; kafkajs stand-in, no broker)', () => {
  const prefix = uniqueName('hz.kafka');
  const standin = new KafkaStandin({ partitions: 2 });
  const parser = new KafkaParser();
  const numRuns = runs(100);
  let server: INestMicroservice;
  let producer: StandinProducer;

  beforeAll(async () => {
    const options = { client: { clientId: prefix, brokers: ['kafka-standin:9092'] }, consumer: { groupId: prefix }, run: { partitionsConsumedConcurrently: 2 } };
    server = await NestFactory.createMicroservice<MicroserviceOptions>(receiverModule(prefix), { strategy: standinServer(standin, options), logger: false });
    await server.listen();
    producer = standin.producer();
    await producer.connect();
  });

  afterAll(async () => {
    await producer?.disconnect();
    await server?.close();
    expect(standin.errors).toEqual([]);
  });

  it(`never crashes, pollutes or echoes an invalid id; the first valid id wins; the handler always runs (${numRuns} runs)`, async () => {
    await assertHostile(
      fc.array(entry, { maxLength: 8 }),
      async (entries) => {
        const key = nextKey(prefix);
        const topic = hostilePattern(prefix);
        const headers = ownObject(entries);
        await producer.send({ topic, messages: [{ value: JSON.stringify({ key }), headers: headers as never }] });
        const seen = await received.waitFor(key, 5000);
        expectWellFormed(seen, key);
        // The message as the server's consumer received it, through Nest's own parser, then the contract.
        const delivered = standin.read(topic).find((m) => m.value?.toString() === JSON.stringify({ key }));
        const parsed = parser.parse({ ...delivered!, headers: { ...delivered!.headers } }).headers as Record<string, unknown>;
        const readable: Record<string, unknown> = {};
        for (const name of Object.keys(parsed)) {
          Object.defineProperty(readable, name, { value: contractValue(parsed[name]), enumerable: true, configurable: true, writable: true });
        }
        const sent = stringsIn(parsed, stringsIn(headers));
        for (const value of Object.values(delivered!.headers)) for (const item of [value].flat()) if (item !== null) sent.add(item.toString('utf8'));
        expectIdFrom(seen.correlationId, candidates([{ kind: 'record', value: readable }]), sent);
      },
      numRuns,
    );
  }, 60_000);
});
