import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { Transport } from '@nestjs/microservices';
import { brokers } from '../utils/brokers.js';
import { malformedHeaders, plainPacket } from './fixtures/harness.js';
import { describeTransport } from './fixtures/suite.js';

const servers = [`nats://${brokers.nats.host}:${brokers.nats.port}`];
let raw: NatsConnection | undefined;

describeTransport({
  carriedBy: 'nats-headers',
  name: 'NATS',
  broker: 'nats',
  options: async (prefix) => ({
    server: { transport: Transport.NATS, options: { servers, queue: `${prefix}-q` } },
    client: { transport: Transport.NATS, options: { servers } },
  }),
  async raw(pattern, payload, metadata) {
    raw ??= await connect({ servers });
    const h = headers();
    if (metadata === 'malformed') for (const [name, value] of Object.entries(malformedHeaders())) h.set(name, value);
    raw.publish(pattern, plainPacket(pattern, payload), metadata === 'none' ? {} : { headers: h });
    await raw.flush();
  },
  async closeRaw() {
    await raw?.close();
  },
});
