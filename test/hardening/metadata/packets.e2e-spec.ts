import { connect, type Socket } from 'node:net';
import type { INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { Redis } from 'ioredis';
import { brokers, freePort, requireBroker, subscriptionsSettled, uniqueName } from '../../utils/brokers.js';
import { hasPacketMetadata } from '../../transports/fixtures/harness.js';
import {
  assertHostile,
  candidates,
  expectIdFrom,
  expectWellFormed,
  hostilePattern,
  jsonCarriers,
  nextKey,
  packetJson,
  received,
  receiverModule,
  runs,
  stringsIn,
  type JsonCarriers,
  type Source,
} from './fixtures.js';

/**
 * TCP and Redis: raw JSON packets as a non-Nest producer writes them, with hostile NestJS 12
 * `packet.metadata` and a hostile fallback envelope (either, both or none), over the real socket
 * and the real broker to Nest's real servers.
 */

/** The sources the receiver reads, in priority order, as it parses them. */
function sourcesOf(carriers: JsonCarriers, readsMetadata: boolean): { sources: Source[]; sent: Set<string> } {
  const sources: Source[] = [];
  const sent = new Set<string>();
  if (readsMetadata && carriers.metadata !== undefined) {
    const metadata: unknown = JSON.parse(carriers.metadata);
    sources.push({ kind: 'strings', value: metadata });
    stringsIn(metadata, sent);
  }
  if (carriers.envelope !== undefined) {
    const envelope: unknown = JSON.parse(carriers.envelope);
    sources.push({ kind: 'record', value: envelope });
    stringsIn(envelope, sent);
  }
  return { sources, sent };
}

interface Spec {
  name: string;
  transport: 'tcp' | 'redis';
  numRuns: number;
  start(): Promise<MicroserviceOptions>;
  /** Puts one raw JSON packet on the wire. */
  send(pattern: string, json: string): Promise<void>;
  close(): Promise<void>;
}

let tcpPort = 0;
let tcpSocket: Socket | undefined;
let redis: Redis | undefined;

async function tcpSend(json: string): Promise<void> {
  if (tcpSocket === undefined || tcpSocket.destroyed) {
    tcpSocket = await new Promise<Socket>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: tcpPort }, () => resolve(socket));
      socket.once('error', reject);
    });
  }
  const socket = tcpSocket;
  // Nest's JSON socket frames by string length (UTF-16 code units), not bytes.
  await new Promise<void>((resolve, reject) => socket.write(`${json.length}#${json}`, (error) => (error ? reject(error) : resolve())));
}

const specs: Spec[] = [
  {
    name: 'TCP',
    transport: 'tcp',
    numRuns: runs(100),
    async start() {
      tcpPort = await freePort();
      return { transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } };
    },
    send: (_pattern, json) => tcpSend(json),
    async close() {
      tcpSocket?.destroy();
      tcpSocket = undefined;
    },
  },
  {
    name: 'Redis',
    transport: 'redis',
    numRuns: runs(100),
    async start() {
      await requireBroker('redis');
      redis = new Redis({ host: brokers.redis.host, port: brokers.redis.port });
      return { transport: Transport.REDIS, options: { host: brokers.redis.host, port: brokers.redis.port } };
    },
    async send(pattern, json) {
      await redis!.publish(pattern, json);
    },
    async close() {
      await redis?.quit();
      redis = undefined;
    },
  },
];

for (const spec of specs) {
  describe(`hostile metadata over ${spec.name} (packet.metadata and envelope)`, () => {
    const prefix = uniqueName(`hz.${spec.transport}`);
    const readsMetadata = hasPacketMetadata[spec.transport];
    let server: INestMicroservice;

    beforeAll(async () => {
      const options = await spec.start();
      server = await NestFactory.createMicroservice<MicroserviceOptions>(receiverModule(prefix), { ...options, logger: false } as never);
      await server.listen();
      if (spec.transport === 'redis') await subscriptionsSettled(server, 'redis');
    }, 30_000);

    afterAll(async () => {
      await spec.close();
      await server?.close();
    });

    it(`never crashes, pollutes or echoes an invalid id; the first valid id wins; the handler always runs (${spec.numRuns} runs)`, async () => {
      await assertHostile(jsonCarriers, async (carriers) => {
        const key = nextKey(prefix);
        await spec.send(hostilePattern(prefix), packetJson(hostilePattern(prefix), key, carriers, true));
        const seen = await received.waitFor(key, 5000);
        const { sources, sent } = sourcesOf(carriers, readsMetadata);
        expectWellFormed(seen, key);
        expectIdFrom(seen.correlationId, candidates(sources), sent);
      }, spec.numRuns);
    }, 60_000);
  });
}
