import type { ClientOptions, CustomClientOptions, MicroserviceOptions } from '@nestjs/microservices';
import { KafkaStandin, standinClientClass, standinServer, type StandinProducer } from './fixtures/kafka-standin.js';
import { describeTransport } from './fixtures/suite.js';

/*
 * Kafka through Nest's real ClientKafka and ServerKafka, on an in-process stand-in for the kafkajs
 * library (test/transports/fixtures/kafka-standin.ts) — no Kafka broker is involved. Eight
 * partitions consumed concurrently, so handlers of different messages genuinely interleave.
 */

const standin = new KafkaStandin({ partitions: 8 });
let raw: StandinProducer | undefined;

describeTransport({
  carriedBy: 'kafka-headers',
  name: 'Kafka (kafkajs stand-in)',
  async options(prefix) {
    const options = {
      client: { clientId: prefix, brokers: ['kafka-standin:9092'] },
      consumer: { groupId: prefix },
      run: { partitionsConsumedConcurrently: 8 },
    };
    const replies = ['whoami', 'echo', 'injected'].map((name) => `${prefix}.${name}`);
    const server: MicroserviceOptions = { strategy: standinServer(standin, options) };
    // A custom client class (`{ customClass, options }`): the harness hands it to ClientsModule.register as it is.
    const client = { customClass: standinClientClass(standin, replies), options } as CustomClientOptions as unknown as ClientOptions;
    return { server, client };
  },
  async raw(pattern, payload, metadata) {
    if (raw === undefined) {
      raw = standin.producer();
      await raw.connect();
    }
    // What a non-Nest kafkajs producer can put on the wire: bytes only (kafkajs sends String(value)
    // for anything that is not a Buffer). Nest's parser turns `{...}`/`[...]` header texts into
    // objects and arrays and keeps a Buffer that starts with a zero byte: wrong types for the reader.
    const headers: Record<string, unknown> = {
      traceparent: Buffer.from([0xff, 0xfe, 0x00, 0x2d, 0xc3]),
      tracestate: 'x'.repeat(20_000),
      baggage: '{"tenant":"evil"}',
      'x-request-id': ['bad id with spaces', Buffer.from([0x00, 0x61, 0x62]), 'y'.repeat(20_000)],
      'x-correlation-id': '["not","an","id list"]',
    };
    Object.defineProperty(headers, '__proto__', { value: '{"polluted":true,"x-request-id":"proto-evil-id"}', enumerable: true, configurable: true, writable: true });
    await raw.send({ topic: pattern, messages: [{ value: JSON.stringify(payload), ...(metadata === 'none' ? {} : { headers: headers as never }) }] });
  },
  async closeRaw() {
    await raw?.disconnect();
    expect(standin.errors).toEqual([]);
  },
});
