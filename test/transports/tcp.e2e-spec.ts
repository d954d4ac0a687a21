import { connect } from 'node:net';
import { Transport } from '@nestjs/microservices';
import { freePort } from './brokers.js';
import { malformedEnvelopePacket, plainPacket } from './fixtures/harness.js';
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
  carriedBy: 'envelope',
  name: 'TCP',
  async options() {
    port = await freePort();
    const options = { host: '127.0.0.1', port };
    return { server: { transport: Transport.TCP, options }, client: { transport: Transport.TCP, options } };
  },
  raw: (pattern, payload, metadata) =>
    writeFrame(metadata === 'none' ? plainPacket(pattern, payload) : malformedEnvelopePacket(pattern, payload)),
});
