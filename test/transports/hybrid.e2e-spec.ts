import { Transport } from '@nestjs/microservices';
import { brokers, freePort } from '../utils/brokers.js';
import { defaultRoute, malformedMetadataPacket, plainPacket } from './fixtures/harness.js';
import { describeTransport } from './fixtures/suite.js';

// One Nest app serving HTTP and, through connectMicroservice(), the message handlers it calls itself.
let tcpPort = 0;

describeTransport({
  name: 'hybrid HTTP + TCP',
  carriedBy: defaultRoute('tcp'),
  hybrid: true,
  async options() {
    tcpPort = await freePort();
    const options = { host: '127.0.0.1', port: tcpPort };
    return { server: { transport: Transport.TCP, options }, client: { transport: Transport.TCP, options } };
  },
  raw: async (pattern, payload, metadata) => {
    const { connect } = await import('node:net');
    const json = metadata === 'none' ? plainPacket(pattern, payload) : malformedMetadataPacket(pattern, payload);
    await new Promise<void>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: tcpPort }, () => socket.end(`${json.length}#${json}`, () => resolve()));
      socket.once('error', reject);
    });
  },
});

describeTransport({
  name: 'hybrid HTTP + NATS',
  broker: 'nats',
  carriedBy: 'nats-headers',
  hybrid: true,
  options: async (prefix) => {
    const servers = [`nats://${brokers.nats.host}:${brokers.nats.port}`];
    return { server: { transport: Transport.NATS, options: { servers, queue: `${prefix}-q` } }, client: { transport: Transport.NATS, options: { servers } } };
  },
  async raw(pattern, payload, metadata) {
    // A non-Nest producer on the same subject, via a raw NATS connection.
    const { connect, headers } = await import('@nats-io/transport-node');
    const nc = await connect({ servers: [`nats://${brokers.nats.host}:${brokers.nats.port}`] });
    const h = headers();
    if (metadata === 'malformed') h.set('traceparent', 'garbage');
    nc.publish(pattern, plainPacket(pattern, payload), metadata === 'none' ? {} : { headers: h });
    await nc.flush();
    await nc.close();
  },
});
