import { ClientKafka, KafkaContext } from '@nestjs/microservices';
import { kafkaHeaderLookup, withKafkaBatch, withKafkaHeaders } from './kafka.js';

const ours = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'x-request-id': 'ours' };

/** A ClientKafka as far as withKafkaHeaders looks at it (its serializer); never connected. */
const nestClient = new ClientKafka({});
const customClient = new ClientKafka({ serializer: { serialize: (value: unknown) => ({ value: JSON.stringify(value), headers: {} }) } });

const contextOf = (headers: unknown): Record<PropertyKey, unknown> =>
  new KafkaContext([{ headers } as never, 0, 'topic', undefined as never, undefined as never, undefined as never]) as unknown as Record<PropertyKey, unknown>;

describe('withKafkaHeaders', () => {
  it('wraps a bare payload as { value, headers } for Nest\'s serializer, and leaves it alone for a custom one', () => {
    expect(withKafkaHeaders(nestClient, { a: 1 }, ours)).toEqual({ value: { a: 1 }, headers: ours });
    expect(withKafkaHeaders(nestClient, 'text', ours)).toEqual({ value: 'text', headers: ours });
    const payload = { a: 1 };
    expect(withKafkaHeaders(customClient, payload, ours)).toBe(payload);
  });

  it('copies a Kafka message with the caller\'s headers on top, never changing it', () => {
    const message = { key: 'k', value: 'v', partition: 2, headers: { 'x-request-id': 'mine', other: Buffer.from('b') } };
    const out = withKafkaHeaders(nestClient, message, ours) as typeof message;
    expect(out).toEqual({ key: 'k', value: 'v', partition: 2, headers: { traceparent: ours.traceparent, 'x-request-id': 'mine', other: Buffer.from('b') } });
    expect(message.headers).toEqual({ 'x-request-id': 'mine', other: Buffer.from('b') });
    expect(withKafkaHeaders(nestClient, { value: 1, headers: null }, ours)).toEqual({ value: 1, headers: ours });
  });

  it('leaves alone what it cannot copy faithfully: a message that is a class instance, headers that are not a plain object', () => {
    class Message {
      value = 1;
    }
    const instance = new Message();
    expect(withKafkaHeaders(nestClient, instance, ours)).toBe(instance);
    const odd = { value: 1, headers: new Map([['x', 'y']]) };
    expect(withKafkaHeaders(nestClient, odd, ours)).toBe(odd);
    const listed = { value: 1, headers: ['x'] };
    expect(withKafkaHeaders(nestClient, listed, ours)).toBe(listed);
  });

  it('withKafkaBatch maps each message of { messages } and leaves anything else alone', () => {
    let n = 0;
    expect(withKafkaBatch({ messages: [1, 2], extra: true }, (m) => [m, ++n])).toEqual({ messages: [[1, 1], [2, 2]], extra: true });
    for (const data of [null, undefined, { messages: 'no' }, [1]]) expect(withKafkaBatch(data, () => 'x')).toBe(data);
  });
});

describe('kafkaHeaderLookup', () => {
  it('is only for a KafkaContext', () => {
    expect(kafkaHeaderLookup({ getMessage: () => ({ headers: {} }) })).toBeUndefined();
    expect(kafkaHeaderLookup(contextOf({}))).toBeDefined();
  });

  it('reads strings as they are and Buffers as strict UTF-8; anything else is malformed', () => {
    const headers: Record<string, unknown> = {
      a: 'text',
      b: Buffer.from('bytes'),
      c: Buffer.from([0xff, 0xfe]),
      d: { tenant: 'evil' },
      e: 42,
      f: null,
      g: Buffer.from('\uFEFFid'),
      h: Buffer.alloc(3 * 8192 + 1, 0x61),
    };
    const lookup = kafkaHeaderLookup(contextOf(headers))!;
    expect(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'missing'].map((name) => lookup(name, false))).toEqual([
      'text',
      'bytes',
      undefined,
      undefined,
      undefined,
      undefined,
      '\uFEFFid',
      undefined,
    ]);
  });

  it('a repeated header as kafkajs delivers it (Buffers) gives its values; any other array is malformed', () => {
    const headers = { ids: [Buffer.from('one'), null, Buffer.from('two')], json: ['one', 'two'], many: Array.from({ length: 40 }, (_, i) => Buffer.from(`v${i}`)) };
    const lookup = kafkaHeaderLookup(contextOf(headers))!;
    expect(lookup('ids', true)).toEqual(['one', undefined, 'two']);
    expect(lookup('json', true)).toBeUndefined();
    expect((lookup('many', true) as unknown[]).length).toBe(16);
  });

  it('reads own keys only: an inherited or __proto__ value is not a header', () => {
    const headers = Object.create({ 'x-request-id': 'inherited' }) as Record<string, unknown>;
    Object.defineProperty(headers, '__proto__', { value: 'own-proto', enumerable: true });
    const lookup = kafkaHeaderLookup(contextOf(headers))!;
    expect(lookup('x-request-id', false)).toBeUndefined();
    expect(lookup('__proto__', false)).toBe('own-proto');
    expect(kafkaHeaderLookup(contextOf(undefined))!('x-request-id', false)).toBeUndefined();
    expect(kafkaHeaderLookup(contextOf(['x']))!('0', false)).toBeUndefined();
  });
});
