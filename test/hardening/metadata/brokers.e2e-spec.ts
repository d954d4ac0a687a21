import type { INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { connect as natsConnect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import amqplib from 'amqplib';
import fc from 'fast-check';
import mqtt from 'mqtt';
import { brokers, requireBroker, subscriptionsSettled, uniqueName, type BrokerName } from '../../utils/brokers.js';
import {
  assertHostile,
  candidates,
  expectIdFrom,
  expectWellFormed,
  headerMapJson,
  headerName,
  hostilePattern,
  hostileString,
  jsonValue,
  nextKey,
  packetJson,
  received,
  receiverModule,
  runs,
  stringsIn,
  type Source,
} from './fixtures.js';

/**
 * NATS, RabbitMQ and MQTT (5 and 3.1.1): hostile headers / user properties / envelopes published
 * with the brokers' own client libraries (so they arrive exactly as the broker delivers them) to
 * Nest's real servers. What a client library or broker refuses to carry (CR/LF in NATS headers,
 * control characters in MQTT strings, non-string MQTT values) cannot reach a server; the in-process
 * suite feeds those shapes to the extractor directly.
 */

/** One header entry as sent; repeated names are repeated headers (NATS) or merged into lists. */
type Entry = readonly [string, unknown];

/** A message: its headers (transport-specific values) and, maybe, an envelope around the payload (JSON text). */
interface Message {
  entries: Entry[];
  envelope: string | undefined;
}

/** Own-key object from entries (later duplicates win, `__proto__` stays an own key). */
function ownObject(entries: readonly Entry[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of entries) Object.defineProperty(out, key, { value, enumerable: true, configurable: true, writable: true });
  return out;
}

/** The envelope source when the payload is one (then it alone counts), else the transport's headers. */
function withEnvelope(message: Message, headers: Source, sent: Set<string>): Source[] {
  if (message.envelope === undefined) return [headers];
  const envelope: unknown = JSON.parse(message.envelope);
  stringsIn(envelope, sent);
  return [{ kind: 'record', value: envelope }];
}

const envelopeArb = fc.option(headerMapJson, { nil: undefined, freq: 5 });

interface Spec {
  name: string;
  broker: BrokerName;
  numRuns: number;
  message: fc.Arbitrary<Message>;
  server(prefix: string): MicroserviceOptions;
  open(prefix: string): Promise<void>;
  /** Publishes one event with `message`'s headers; returns the sources the receiver reads, in order. */
  publish(pattern: string, json: string, message: Message, sent: Set<string>): Promise<Source[]>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------- NATS

/** NATS header names: printable ASCII without ':' (the client throws otherwise). */
const natsName = headerName.filter((name) => name.length > 0 && /^[!-9;-~]+$/.test(name));
/** NATS header values: anything but CR/LF (the client throws otherwise); values are trimmed on both ends. */
const natsValue = hostileString.map((value) => value.replace(/[\r\n]/g, ''));

let nats: NatsConnection | undefined;

const natsSpec: Spec = {
  name: 'NATS (headers)',
  broker: 'nats',
  numRuns: runs(100),
  message: fc.record({ entries: fc.array(fc.tuple(natsName, natsValue), { maxLength: 8 }), envelope: envelopeArb }),
  server: (prefix) => ({ transport: Transport.NATS, options: { servers: [`nats://${brokers.nats.host}:${brokers.nats.port}`], queue: `${prefix}-q` } }),
  async open() {
    nats = await natsConnect({ servers: [`nats://${brokers.nats.host}:${brokers.nats.port}`] });
  },
  async publish(pattern, json, message, sent) {
    const h = natsHeaders();
    for (const [name, value] of message.entries) {
      h.append(name, value as string);
      sent.add(value as string);
    }
    nats!.publish(pattern, json, { headers: h });
    await nats!.flush();
    const values = (name: string) => message.entries.filter(([key]) => key === name).map(([, value]) => (value as string).trim());
    return withEnvelope(message, { kind: 'lists', get: values }, sent);
  },
  async close() {
    await nats?.close();
  },
};

// ---------------------------------------------------------------- RabbitMQ

/**
 * amqplib guesses a number's AMQP type and throws for some it cannot encode: integers beyond the
 * 64-bit range, fractions of magnitude 2^50 or more (it takes them for integers), NaN and -Infinity.
 * The sender replaces those with a fraction it can encode.
 */
function amqpSafe(value: unknown): unknown {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return 0.5;
    return Math.abs(value) >= (Number.isInteger(value) ? 2 ** 62 : 2 ** 50) ? 0.5 : value;
  }
  if (Array.isArray(value)) return value.map(amqpSafe);
  if (value === null || typeof value !== 'object') return value;
  // amqplib reads a nested table with an own `!` key as its typed-value notation (`{ '!': type, value }`)
  // and refuses to encode it, so the sender renames that key.
  return ownObject(Object.keys(value).map((key) => [key === '!' ? '!key' : key, amqpSafe((value as Record<string, unknown>)[key])] as const));
}

/** AMQP table values: strings, lists, nested tables, numbers, booleans, null, Buffers (byte arrays). */
const rmqValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: hostileString },
  { weight: 2, arbitrary: fc.array(hostileString, { minLength: 1, maxLength: 4 }) },
  { weight: 2, arbitrary: jsonValue.map((text) => amqpSafe(JSON.parse(text))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 24 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 1, arbitrary: fc.constantFrom('x-request-id', 'good-id').map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null)).map(amqpSafe) },
);
/** A `__proto__` table: amqplib's decoder assigns it, which swaps the headers object's prototype. */
const rmqProto = fc.constant<Entry>(['__proto__', { 'x-request-id': 'proto-evil-id', 'x-correlation-id': 'proto-evil-id', polluted: 'yes' }]);

/** amqplib encodes a header table into a 64 KB buffer at most: entries beyond ~55 KB are left out. */
function withinAmqpBudget(entries: Entry[]): Entry[] {
  let bytes = 0;
  return entries.filter(([key, value]) => {
    const size = Buffer.byteLength(key) + Buffer.byteLength(JSON.stringify(value ?? null) ?? '') + 16;
    if (bytes + size > 55_000) return false;
    bytes += size;
    return true;
  });
}

let amqp: { connection: amqplib.ChannelModel; channel: amqplib.Channel } | undefined;
let rmqQueue = '';

const rmqSpec: Spec = {
  name: 'RabbitMQ (headers)',
  broker: 'rabbitmq',
  numRuns: runs(75),
  message: fc.record({
    entries: fc.array(fc.oneof({ weight: 8, arbitrary: fc.tuple(headerName, rmqValue) as fc.Arbitrary<Entry> }, { weight: 1, arbitrary: rmqProto }), { maxLength: 8 }).map(withinAmqpBudget),
    envelope: envelopeArb,
  }),
  server(prefix) {
    rmqQueue = `${prefix}-queue`;
    const url = `amqp://guest:guest@${brokers.rabbitmq.host}:${brokers.rabbitmq.port}`;
    return { transport: Transport.RMQ, options: { urls: [url], queue: rmqQueue, queueOptions: { durable: false, autoDelete: true } } };
  },
  async open() {
    const connection = await amqplib.connect(`amqp://guest:guest@${brokers.rabbitmq.host}:${brokers.rabbitmq.port}`);
    amqp = { connection, channel: await connection.createChannel() };
  },
  async publish(_pattern, json, message, sent) {
    const headers = ownObject(message.entries);
    stringsIn(headers, sent);
    amqp!.channel.sendToQueue(rmqQueue, Buffer.from(json), { headers });
    // The receiver sees the same own keys, except `__proto__` (its decoder assigns it as the prototype).
    const own = { ...headers };
    delete own.__proto__;
    return withEnvelope(message, { kind: 'record', value: own }, sent);
  },
  async close() {
    await amqp?.channel.close();
    await amqp?.connection.close();
  },
};

// ---------------------------------------------------------------- MQTT

/**
 * MQTT strings: Mosquitto disconnects a client whose strings hold control characters (C0, DEL, C1)
 * or noncharacters, and a string is at most 65535 bytes. Lone surrogates arrive as U+FFFD.
 */
const mqttSafe = (value: string) =>
  value
    .replace(/[\u0000-\u001f\u007f-\u009f\ufdd0-\ufdef\ufffe\uffff]/g, '')
    .replace(/[\ud800-\udbff][\udffe\udfff]/g, '')
    .slice(0, 20_000);
const mqttValue: fc.Arbitrary<string | string[]> = fc.oneof(
  { weight: 4, arbitrary: hostileString.map(mqttSafe) },
  { weight: 1, arbitrary: fc.array(hostileString.map(mqttSafe), { minLength: 1, maxLength: 4 }) },
);

const mqttUrl = `mqtt://${brokers.mqtt.host}:${brokers.mqtt.port}`;
const mqttClients: Record<number, mqtt.MqttClient | undefined> = {};

function mqttSpec(protocolVersion: 5 | 4): Spec {
  return {
    name: protocolVersion === 5 ? 'MQTT 5 (user properties)' : 'MQTT 3.1.1 (envelope)',
    broker: 'mqtt',
    numRuns: runs(protocolVersion === 5 ? 75 : 50),
    message:
      protocolVersion === 5
        ? fc.record({
            entries: fc.array(fc.tuple(headerName.map(mqttSafe), mqttValue), { maxLength: 8 }),
            envelope: envelopeArb,
          })
        : fc.record({ entries: fc.constant([]), envelope: fc.option(headerMapJson, { nil: undefined, freq: 8 }) }),
    server: () => ({ transport: Transport.MQTT, options: { url: mqttUrl, protocolVersion } }),
    async open() {
      mqttClients[protocolVersion] = await mqtt.connectAsync(mqttUrl, { protocolVersion, reconnectPeriod: 0 });
    },
    async publish(pattern, json, message, sent) {
      const userProperties = ownObject(message.entries) as Record<string, string | string[]>;
      stringsIn(userProperties, sent);
      const options = protocolVersion === 5 && message.entries.length > 0 ? { qos: 1 as const, properties: { userProperties } } : { qos: 1 as const };
      await mqttClients[protocolVersion]!.publishAsync(pattern, json, options);
      const source: Source = protocolVersion === 5 ? { kind: 'record', value: userProperties } : { kind: 'record', value: undefined };
      return withEnvelope(message, source, sent);
    },
    async close() {
      await mqttClients[protocolVersion]?.endAsync();
    },
  };
}

// ---------------------------------------------------------------- the properties

for (const spec of [natsSpec, rmqSpec, mqttSpec(5), mqttSpec(4)]) {
  describe(`hostile metadata over ${spec.name}`, () => {
    const prefix = uniqueName(`hz.${spec.broker}`);
    let server: INestMicroservice;

    beforeAll(async () => {
      await requireBroker(spec.broker);
      server = await NestFactory.createMicroservice<MicroserviceOptions>(receiverModule(prefix), { ...spec.server(prefix), logger: false } as never);
      await server.listen();
      if (spec.broker === 'nats') await subscriptionsSettled(server, 'nats');
      await spec.open(prefix);
    }, 30_000);

    afterAll(async () => {
      await spec.close();
      await server?.close();
    });

    it(`never crashes, pollutes or echoes an invalid id; the first valid id wins; the handler always runs (${spec.numRuns} runs)`, async () => {
      await assertHostile(spec.message, async (message) => {
        const key = nextKey(prefix);
        const pattern = hostilePattern(prefix);
        const sent = new Set<string>();
        const sources = await spec.publish(pattern, packetJson(pattern, key, { metadata: undefined, envelope: message.envelope }, false), message, sent);
        const seen = await received.waitFor(key, 5000);
        expectWellFormed(seen, key);
        expectIdFrom(seen.correlationId, candidates(sources), sent);
      }, spec.numRuns);
    }, 60_000);
  });
}
