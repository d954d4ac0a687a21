import 'reflect-metadata';
import { describe, expect, it } from '@jest/globals';
import { MINTED_ID_KEY } from '../../constants.js';
import { ContextService } from '../../access/context.service.js';
import { ContextLogger } from '../logger/index.js';
import { contextObserveOptions } from './index.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
type Holder = { headers?: Record<string, string>; raw?: Holder; getMetadata?: () => unknown; [MINTED_ID_KEY]?: string };

describe('contextObserveOptions(): traceIdGenerator where no context is open yet', () => {
  const generate = (source: unknown, own?: (source: unknown) => string): string =>
    (contextObserveOptions(own === undefined ? {} : { traceIdGenerator: own }).traceIdGenerator as (source: unknown) => string)(source);

  it('takes a valid inbound id from the request headers or the message metadata, and leaves nothing to adopt', () => {
    const req: Holder = { headers: { 'x-correlation-id': 'from-header-1' } };
    expect(generate(req)).toBe('from-header-1');
    expect(req[MINTED_ID_KEY]).toBeUndefined();
    const ctx: Holder = { getMetadata: () => ({ 'x-request-id': 'from-metadata-1' }) };
    expect(generate(ctx)).toBe('from-metadata-1');
    expect(ctx[MINTED_ID_KEY]).toBeUndefined();
  });

  it('mints a UUIDv7 for no id or an invalid one, left on the request for the context to adopt (Node\'s own under Fastify\'s)', () => {
    const raw: Holder = { headers: { 'x-request-id': 'bad id with spaces' } };
    const fastifyRequest: Holder = { headers: raw.headers, raw };
    const id = generate(fastifyRequest);
    expect(id).toMatch(UUID_V7);
    expect(raw[MINTED_ID_KEY]).toBe(id);
  });

  it("uses your own generator there; one that throws or returns no string gets a UUIDv7 instead", () => {
    const ctx: Holder = {};
    expect(generate(ctx, () => 'yours-1')).toBe('yours-1');
    expect(ctx[MINTED_ID_KEY]).toBe('yours-1');
    expect(generate({}, () => {
      throw new Error('boom');
    })).toMatch(UUID_V7);
    expect(generate({}, () => 42 as unknown as string)).toMatch(UUID_V7);
  });

  it('never throws for odd sources', () => {
    const hostile = new Proxy({}, { get: () => { throw new Error('trap'); } });
    for (const source of [undefined, null, 'req', 42, hostile, Object.freeze({ headers: {} })]) expect(generate(source)).toMatch(UUID_V7);
  });
});

describe('contextObserveOptions(): skipInstrumentation', () => {
  it("is true for the library's classes and their instances, and for what your own hook skips", () => {
    class Mine {}
    class Skipped {}
    const skip = contextObserveOptions({ skipInstrumentation: (instance) => instance instanceof Skipped }).skipInstrumentation as (i: unknown) => boolean;
    expect(skip(Object.create(ContextService.prototype))).toBe(true);
    expect(skip(new ContextLogger())).toBe(true);
    expect(skip(ContextService)).toBe(true);
    expect(skip(new Skipped())).toBe(true);
    expect(skip(new Mine())).toBe(false);
    expect(skip(() => 1)).toBe(false);
  });

  it('never throws itself for a provider whose inspection throws (what your hook throws reaches Observe, which skips it)', () => {
    const skip = contextObserveOptions().skipInstrumentation as (i: unknown) => boolean;
    const hostile = new Proxy({}, { get: () => { throw new Error('trap'); }, getPrototypeOf: () => { throw new Error('trap'); } });
    expect(skip(hostile)).toBe(false);
  });

  it('keeps your other options as they are', () => {
    const options = contextObserveOptions({ traceIdKey: 'rid', attachTraceIdToLogs: false });
    expect(options).toMatchObject({ traceIdKey: 'rid', attachTraceIdToLogs: false });
  });
});
