import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ContextModule, isValidCorrelationId } from '../../src/index.js';
import { ContextHost } from '../../src/runtime/context-host.js';
import { storage } from '../../src/record/context-record.js';
import { MyContext } from '../fixtures/app-context.js';

@Module({ imports: [ContextModule.forRoot(MyContext)] })
class AnchorModule {}

/** Transport context objects a custom transport (or a hostile one) may hand to a handler. */
const transports: [string, () => unknown][] = [
  ['frozen', () => Object.freeze({ getPattern: () => 'p' })],
  ['sealed', () => Object.seal({ getPattern: () => 'p' })],
  ['a Proxy whose every trap throws', () => new Proxy({}, { get: () => { throw new Error('get'); }, set: () => { throw new Error('set'); }, defineProperty: () => { throw new Error('define'); } })],
  ['a revoked Proxy', () => { const { proxy, revoke } = Proxy.revocable({}, {}); revoke(); return proxy; }],
  ['a forged record under the anchor key', () => ({ [Symbol.for('nestjs-context:record')]: { config: 'forged', correlationId: 'forged\n' } })],
];

describe('ContextHost.forMessage on transport contexts that cannot hold a record', () => {
  it.each(transports)('%s: a valid fresh record, no throw', async (_label, make) => {
    const app = await NestFactory.createApplicationContext(AnchorModule, { logger: false });
    try {
      const host = app.get(ContextHost);
      const record = storage.exit(() => host.forMessage('rpc', { any: 'payload' }, make()));
      expect(isValidCorrelationId(record.correlationId)).toBe(true);
      expect(record.config).toBe(host.options);
    } finally {
      await app.close();
    }
  });
});

describe('records of another build of the package', () => {
  it('a record made by the other build (ESM vs CommonJS) is recognised by its brand, a forged one is not', async () => {
    const { recordOfRequest } = await import('../../src/record/context-record.js');
    const key = Symbol.for('nestjs-context:record');
    const otherBuildProto = { [Symbol.for('nestjs-context:record-brand')]: true };
    const foreign = Object.assign(Object.create(otherBuildProto) as object, { config: {}, outer: undefined });
    expect(recordOfRequest({ [key]: foreign })).toBe(foreign);
    expect(recordOfRequest({ raw: { [key]: foreign } })).toBe(foreign);
    expect(recordOfRequest({ [key]: { config: {}, correlationId: 'forged' } })).toBeUndefined();
  });
});
