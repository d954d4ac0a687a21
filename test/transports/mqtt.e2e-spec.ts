import { Transport } from '@nestjs/microservices';
import mqtt from 'mqtt';
import { brokers } from '../utils/brokers.js';
import { malformedEnvelopePacket, malformedHeaders, plainPacket } from './fixtures/harness.js';
import { describeTransport } from './fixtures/suite.js';

const url = `mqtt://${brokers.mqtt.host}:${brokers.mqtt.port}`;

for (const protocolVersion of [5, 4] as const) {
  let raw: mqtt.MqttClient | undefined;
  describeTransport({
    carriedBy: protocolVersion === 5 ? 'mqtt-user-properties' : 'envelope',
    name: `MQTT v${protocolVersion === 5 ? '5 (user properties)' : '3.1.1 (envelope)'}`,
    broker: 'mqtt',
    options: async () => ({
      server: { transport: Transport.MQTT, options: { url, protocolVersion } },
      client: { transport: Transport.MQTT, options: { url, protocolVersion } },
    }),
    async raw(pattern, payload, metadata) {
      raw ??= await mqtt.connectAsync(url, { protocolVersion: 5 });
      if (metadata === 'none') {
        await raw.publishAsync(pattern, plainPacket(pattern, payload));
      } else if (protocolVersion === 5) {
        await raw.publishAsync(pattern, plainPacket(pattern, payload), { properties: { userProperties: malformedHeaders() } });
      } else {
        await raw.publishAsync(pattern, malformedEnvelopePacket(pattern, payload));
      }
    },
    async closeRaw() {
      await raw?.endAsync();
    },
  });
}
