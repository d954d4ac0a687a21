import { Transport } from '@nestjs/microservices';
import { Redis } from 'ioredis';
import { brokers } from '../utils/brokers.js';
import { defaultRoute, malformedMetadataPacket, plainPacket } from './fixtures/harness.js';
import { describeTransport } from './fixtures/suite.js';

const { host, port } = brokers.redis;
let raw: Redis | undefined;

describeTransport({
  // NestJS 12: packet.metadata; NestJS 11: the envelope.
  carriedBy: defaultRoute('redis'),
  name: 'Redis',
  broker: 'redis',
  options: async () => ({
    server: { transport: Transport.REDIS, options: { host, port } },
    client: { transport: Transport.REDIS, options: { host, port } },
  }),
  async raw(pattern, payload, metadata) {
    raw ??= new Redis({ host, port, lazyConnect: false });
    await raw.publish(pattern, metadata === 'none' ? plainPacket(pattern, payload) : malformedMetadataPacket(pattern, payload));
  },
  async closeRaw() {
    await raw?.quit();
  },
});
