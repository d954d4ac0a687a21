import 'reflect-metadata';
import { describe, expect, it } from '@jest/globals';
import { MINTED_ID_KEY } from '../../constants.js';
import { ContextService } from '../../access/context.service.js';
import { ContextLogger } from '../logger/index.js';
import { JOB_TRACE_OPTION_KEY, REQUEST_ID_PATTERN } from '@nestjs/observe';
import type { ContextModuleOptions } from '../../interfaces/context-module-options.interface.js';
import { registerApp } from '../../runtime/apps.js';
import { ContextHost } from '../../runtime/context-host.js';
import { inOperationScope, jobIdOptions } from '../../runtime/internal.js';
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

describe('contextObserveOptions(): traceIdGenerator with one app running (its own rules)', () => {
  class AppContext {}
  const generate = (source: unknown): string => (contextObserveOptions().traceIdGenerator as (source: unknown) => string)(source);

  /** Runs `fn` while an app with `options` counts as the only one alive in the process. */
  function withApp(options: ContextModuleOptions<AppContext>, fn: () => void): void {
    const host = new ContextHost(AppContext, options);
    const forget = registerApp(host as ContextHost);
    try {
      fn();
    } finally {
      forget();
    }
  }

  it("takes an inbound id the app's validate accepts, which the default rule would refuse", () => {
    withApp({ correlationId: { validate: (id) => /^[\w ]{1,64}$/.test(id) } }, () => {
      const req: Holder = { headers: { 'x-request-id': 'order 42' } };
      expect(generate(req)).toBe('order 42');
      expect(req[MINTED_ID_KEY]).toBeUndefined();
    });
  });

  it('reads the app\'s own id headers', () => {
    withApp({ correlationId: { requestHeaders: ['x-trace-ref'] } }, () => {
      expect(generate({ headers: { 'x-trace-ref': 'ref-1', 'x-request-id': 'other-1' } })).toBe('ref-1');
    });
  });

  it('mints an id for the context to adopt when the trust policy refuses the inbound one (a request predicate refuses every message)', () => {
    withApp({ trustInbound: (req) => req.headers['x-internal'] === 'yes' }, () => {
      const untrusted: Holder = { headers: { 'x-request-id': 'from-outside-1' } };
      const id = generate(untrusted);
      expect(id).toMatch(UUID_V7);
      expect(untrusted[MINTED_ID_KEY]).toBe(id);
      expect(generate({ headers: { 'x-request-id': 'inside-1', 'x-internal': 'yes' } })).toBe('inside-1');
      const message: Holder = { getMetadata: () => ({ 'x-request-id': 'from-metadata-1' }) };
      expect(generate(message)).toMatch(UUID_V7);
      expect(message[MINTED_ID_KEY]).toMatch(UUID_V7);
    });
  });

  it("leaves the id minted for a gRPC call on its metadata too (its handlers' transport argument)", () => {
    withApp({}, () => {
      const metadata = { get: () => [], getMap: () => ({}) } as Holder & { get(): unknown; getMap(): unknown };
      const call = { metadata } as unknown as Holder;
      const id = generate(call);
      expect(metadata[MINTED_ID_KEY]).toBe(id);
    });
  });
});

describe('contextObserveOptions(): what it registers for the other integrations', () => {
  it("carries the id on jobs in Observe's own job option, for the ids Observe takes from a job", () => {
    contextObserveOptions();
    const option = jobIdOptions().find((o) => o.name === JOB_TRACE_OPTION_KEY);
    expect(option).toBeDefined();
    for (const id of ['order-42', 'a'.repeat(128), 'order 42', '', 'a'.repeat(129), 'é']) expect(option?.accepts(id)).toBe(REQUEST_ID_PATTERN.test(id));
  });

  it("hands the async context of Observe's gateway message operation to the wrapper calling it, and keeps your ws.setAttributes", () => {
    const options = contextObserveOptions({ ws: { setAttributes: () => ({ tenant: 't1' }), tags: { a: 1 } } });
    const ws = (options as { ws?: { setAttributes(message: unknown): unknown; tags?: unknown } }).ws;
    expect(ws?.tags).toEqual({ a: 1 });
    const { result, scope } = inOperationScope(() => ws?.setAttributes({ gateway: 'G', pattern: 'p', client: {}, data: {} }));
    expect(result).toEqual({ tenant: 't1' });
    expect(typeof scope).toBe('function');
    expect(scope?.(() => 42)).toBe(42);
  });
});
