import { Transport } from '@nestjs/microservices';
import amqplib from 'amqplib';
import { brokers } from '../utils/brokers.js';
import { malformedHeaders, plainPacket } from './fixtures/harness.js';
import { describeTransport } from './fixtures/suite.js';

const url = `amqp://guest:guest@${brokers.rabbitmq.host}:${brokers.rabbitmq.port}`;
let queue = '';
let raw: { connection: amqplib.ChannelModel; channel: amqplib.Channel } | undefined;

describeTransport({
  carriedBy: 'rmq-headers',
  name: 'RabbitMQ',
  broker: 'rabbitmq',
  async options(prefix) {
    queue = `${prefix}-queue`;
    const options = { urls: [url], queue, queueOptions: { durable: false, autoDelete: true } };
    return { server: { transport: Transport.RMQ, options }, client: { transport: Transport.RMQ, options } };
  },
  async raw(pattern, payload, metadata) {
    if (raw === undefined) {
      const connection = await amqplib.connect(url);
      raw = { connection, channel: await connection.createChannel() };
    }
    const bad: Record<string, unknown> = { ...malformedHeaders(), traceparent: 12345, tracestate: ['x'], baggage: { tenant: 'evil' } };
    Object.defineProperty(bad, '__proto__', { value: 'polluted', enumerable: true, configurable: true, writable: true });
    raw.channel.sendToQueue(queue, Buffer.from(plainPacket(pattern, payload)), metadata === 'none' ? {} : { headers: bad });
  },
  async closeRaw() {
    await raw?.channel.close();
    await raw?.connection.close();
  },
});
