import { connect } from 'node:net';
import { Transport } from '@nestjs/microservices';
import { freePort } from '../utils/brokers.js';
import { defaultRoute, malformedMetadataPacket, plainPacket } from './fixtures/harness.js';
import { describeTransport } from './fixtures/suite.js';

let port = 0;

/** Writes one JSON-socket frame (`<length>#<json>`) to the TCP server, as a non-Nest producer would. */
function writeFrame(json: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => {
      socket.end(`${json.length}#${json}`, () => resolve());
    });
    socket.once('error', reject);
  });
}

describeTransport({
  // NestJS 12: packet.metadata; NestJS 11: the envelope.
  carriedBy: defaultRoute('tcp'),
  name: 'TCP',
  async options() {
    port = await freePort();
    const options = { host: '127.0.0.1', port };
    return { server: { transport: Transport.TCP, options }, client: { transport: Transport.TCP, options } };
  },
  raw: (pattern, payload, metadata) =>
    writeFrame(metadata === 'none' ? plainPacket(pattern, payload) : malformedMetadataPacket(pattern, payload)),
});
