import 'reflect-metadata';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Controller, Get, Module, type INestApplication, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import fc from 'fast-check';
import request from 'supertest';
import {
  ContextModule,
  ContextService,
  currentContext,
  type CarrierGetter,
  type CarrierSetter,
  type ContextInit,
  type ContextModuleOptions,
} from '../src/index.js';
import { propagateContext as propagateFetch } from '../src/integrations/fetch/index.js';
import { setTraceSource, type TraceSource } from '../src/record/trace-source.js';
import { ContextHost } from '../src/runtime/context-host.js';
import { bootApp, platforms } from './utils/platforms.js';

/**
 * The one propagation contract, from outside: `contextService.run(fn, { headers, getter })` continues
 * a context from any carrier under the app's trust policy, `contextService.inject(carrier, setter)`
 * writes one call's headers into any carrier, and whatever a sender injects a receiver extracts.
 * Declared baggage fields always go out, even from a service that never touched the context.
 */

class Ctx {
  correlationId: string;
  tenant?: string;
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

/** `currentContext` typed with this file's class (the tests' registry names another). */
const current = currentContext as unknown as Ctx;

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const PARENT = 'b7ad6b7169203331';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT}-01`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[0-3])$/;

async function appWith(options: ContextModuleOptions<Ctx> = {}): Promise<{ app: INestApplicationContext; service: ContextService<Ctx> }> {
  @Module({ imports: [ContextModule.forRoot(Ctx, options)] })
  class AppModule {}
  const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  return { app, service: app.get<ContextService<Ctx>>(ContextService) };
}

/** What a handler sees inside a context. */
function seen(service: ContextService<Ctx>) {
  const trace = service.trace!;
  return {
    id: service.correlationId,
    traceId: trace.traceId,
    parentId: trace.parentId,
    sampled: trace.sampled,
    tracestate: trace.tracestate.map(([key, value]) => `${key}=${value}`).join(','),
    tenant: current.tenant,
  };
}

// ---------------------------------------------------------------- carriers users hold

/** SQS message attributes (`@aws-sdk/client-sqs` `MessageAttributeValue`, the part used). */
type SqsAttributes = Record<string, { DataType?: string; StringValue?: string }>;
const sqsGetter: CarrierGetter<SqsAttributes> = { get: (attributes, name) => attributes[name]?.StringValue };
const sqsSetter: CarrierSetter<SqsAttributes> = {
  set: (attributes, name, value) => {
    attributes[name] = { DataType: 'String', StringValue: value };
  },
};

/** kafkajs record headers: values arrive as Buffers. */
type KafkaHeaders = Record<string, Buffer | string | (Buffer | string)[] | undefined>;
const kafkaSetter: CarrierSetter<KafkaHeaders> = {
  set: (headers, name, value) => {
    headers[name] = Buffer.from(value);
  },
};

describe('contextService.run(fn, { headers }): continue from any carrier', () => {
  let app: INestApplicationContext;
  let service: ContextService<Ctx>;
  beforeAll(async () => ({ app, service } = await appWith({ baggage: { fields: ['tenant'] } })));
  afterAll(() => app.close());

  it('a plain header map: correlation id, trace (new span, caller as parent), tracestate and declared baggage', () => {
    const headers = { 'x-request-id': 'sqs-7', traceparent: TRACEPARENT, tracestate: 'vendor=a,other=b', baggage: 'tenant=acme,x=1' };
    const result = service.run(() => seen(service), { headers });
    expect(result).toEqual({ id: 'sqs-7', traceId: TRACE_ID, parentId: PARENT, sampled: true, tracestate: 'vendor=a,other=b', tenant: 'acme' });
  });

  it('any spelling of the names (API Gateway keeps the client\'s), lists and bytes', () => {
    const lambda = { 'X-Request-Id': 'lambda-1', Traceparent: TRACEPARENT };
    expect(service.run(() => seen(service), { headers: lambda })).toMatchObject({ id: 'lambda-1', traceId: TRACE_ID });
    const kafka: KafkaHeaders = { 'x-request-id': [Buffer.from('bad id'), Buffer.from('kafka-2')], traceparent: Buffer.from(TRACEPARENT) };
    expect(service.run(() => seen(service), { headers: kafka })).toMatchObject({ id: 'kafka-2', traceId: TRACE_ID });
  });

  it('fetch Headers and a Map are read through their get()', () => {
    const fetchHeaders = new Headers({ 'X-Request-Id': 'headers-1', traceparent: TRACEPARENT });
    expect(service.run(() => seen(service), { headers: fetchHeaders })).toMatchObject({ id: 'headers-1', traceId: TRACE_ID });
    const map = new Map([['x-request-id', 'map-1']]);
    expect(service.run(() => seen(service), { headers: map }).id).toBe('map-1');
  });

  it('a getter reads any other carrier (SQS message attributes)', () => {
    const attributes: SqsAttributes = { 'x-request-id': { DataType: 'String', StringValue: 'sqs-8' }, traceparent: { StringValue: TRACEPARENT } };
    expect(service.run(() => seen(service), { headers: attributes, getter: sqsGetter })).toMatchObject({ id: 'sqs-8', traceId: TRACE_ID, parentId: PARENT });
  });

  it('a given correlationId wins over the carrier\'s; the trace still continues; a given context object is used', () => {
    const context = new Ctx({ correlationId: 'ignored', source: 'manual' });
    const result = service.run(() => ({ ...seen(service), same: service.get() === context }), {
      headers: { 'x-request-id': 'from-headers', traceparent: TRACEPARENT },
      correlationId: 'given-1',
      context,
    });
    expect(result).toMatchObject({ id: 'given-1', traceId: TRACE_ID, parentId: PARENT, same: true });
    expect(context.correlationId).toBe('ignored'); // the given object is the caller's: only an undefined field is filled
  });

  it('nothing usable in the carrier: a fresh context', () => {
    for (const headers of [{}, { 'x-request-id': 'bad id', traceparent: 'garbage' }, Object.create(null) as object, 'not an object' as unknown as object]) {
      const result = service.run(() => seen(service), { headers });
      expect(result.id).toMatch(UUID);
      expect(result.parentId).toBeUndefined();
    }
  });

  it('hostile carriers and getters never throw: a throwing getter, inherited and __proto__ keys count as absent', () => {
    const throwing: CarrierGetter<object> = {
      get() {
        throw new Error('broken getter');
      },
    };
    expect(service.run(() => seen(service), { headers: {}, getter: throwing }).id).toMatch(UUID);
    const inherited = Object.create({ 'x-request-id': 'inherited-id' }) as object;
    expect(service.run(() => seen(service), { headers: inherited }).id).toMatch(UUID);
    const proto = JSON.parse('{"__proto__": {"x-request-id": "proto-id"}}') as object;
    expect(service.run(() => seen(service), { headers: proto }).id).toMatch(UUID);
    const getterThrows = Object.defineProperty({}, 'x-request-id', { enumerable: true, get: () => { throw new Error('boom'); } });
    expect(service.run(() => seen(service), { headers: getterThrows }).id).toMatch(UUID);
    expect(({} as Record<string, unknown>)['x-request-id']).toBeUndefined();
  });

  it('outside a run nothing is active; nested runs restore the outer context', () => {
    expect(service.active).toBe(false);
    service.run(() => {
      service.run(() => expect(service.correlationId).toBe('inner'), { headers: { 'x-request-id': 'inner' } });
      expect(service.correlationId).toBe('outer');
    }, { headers: { 'x-request-id': 'outer' } });
  });
});

describe("contextService.run(fn, { headers }) applies the app's trust policy", () => {
  const headers = { 'x-request-id': 'caller-id', traceparent: TRACEPARENT, baggage: 'tenant=acme' };

  it('trustInbound: false: fresh id, new trace, no baggage — unless the caller passes trusted: true', async () => {
    const { app, service } = await appWith({ trustInbound: false, baggage: { fields: ['tenant'] } });
    try {
      const untrusted = service.run(() => seen(service), { headers });
      expect(untrusted.id).toMatch(UUID);
      expect(untrusted.traceId).not.toBe(TRACE_ID);
      expect(untrusted.tenant).toBeUndefined();
      expect(service.run(() => seen(service), { headers, trusted: true })).toMatchObject({ id: 'caller-id', traceId: TRACE_ID, tenant: 'acme' });
    } finally {
      await app.close();
    }
  });

  it('a request predicate cannot vouch for headers without a request: untrusted, and the predicate is not called', async () => {
    let calls = 0;
    const { app, service } = await appWith({ trustInbound: () => ++calls > 0 });
    try {
      expect(service.run(() => seen(service), { headers }).id).toMatch(UUID);
      expect(calls).toBe(0);
    } finally {
      await app.close();
    }
  });

  it('per kind: the id is trusted and the trace is not', async () => {
    const { app, service } = await appWith({ trace: { trustInbound: false } });
    try {
      const result = service.run(() => seen(service), { headers });
      expect(result.id).toBe('caller-id');
      expect(result.traceId).not.toBe(TRACE_ID);
    } finally {
      await app.close();
    }
  });

  it('a validator that rejects the carrier\'s id gives a fresh one', async () => {
    const { app, service } = await appWith({ correlationId: { validate: (id) => id.startsWith('ok-') } });
    try {
      expect(service.run(() => service.correlationId, { headers })).toMatch(UUID);
      expect(service.run(() => service.correlationId, { headers: { 'x-request-id': 'ok-1' } })).toBe('ok-1');
    } finally {
      await app.close();
    }
  });
});

describe('contextService.inject(carrier, setter): one call\'s headers into any carrier', () => {
  let app: INestApplicationContext;
  let service: ContextService<Ctx>;
  beforeAll(async () => ({ app, service } = await appWith({ baggage: { fields: ['tenant'] } })));
  afterAll(() => app.close());
  const inbound = { 'x-request-id': 'inj-1', traceparent: TRACEPARENT, tracestate: 'vendor=a' };

  it('a plain object, a Headers and a Map by default, keeping what the carrier already holds', () => {
    service.run(() => {
      current.tenant = 'acme';
      const plain = service.inject<Record<string, string>>({ 'X-Request-Id': 'caller-set' });
      expect(plain).toMatchObject({ 'X-Request-Id': 'caller-set', tracestate: 'vendor=a', baggage: 'tenant=acme' });
      expect(plain['x-request-id']).toBeUndefined();
      expect(TRACEPARENT_RE.exec(plain.traceparent!)?.[1]).toBe(TRACE_ID);
      const headers = service.inject(new Headers({ tracestate: 'mine=1' }));
      expect([headers.get('x-request-id'), headers.get('tracestate'), headers.get('baggage')]).toEqual(['inj-1', 'mine=1', 'tenant=acme']);
      const map = service.inject(new Map<string, string>());
      expect([...map.keys()].sort()).toEqual(['baggage', 'traceparent', 'tracestate', 'x-request-id']);
    }, { headers: inbound });
  });

  it('a setter for any other carrier; one fresh parent id per call, never the inbound one', () => {
    service.run(() => {
      const parents = new Set<string>();
      for (let i = 0; i < 50; i++) {
        const attributes = service.inject<SqsAttributes>({}, sqsSetter);
        expect(attributes['x-request-id']).toEqual({ DataType: 'String', StringValue: 'inj-1' });
        const [, traceId, parent, flags] = TRACEPARENT_RE.exec(attributes.traceparent!.StringValue!)!;
        expect([traceId, flags]).toEqual([TRACE_ID, '01']);
        parents.add(parent!);
      }
      expect(parents.size).toBe(50);
      expect(parents.has(PARENT)).toBe(false);
    }, { headers: inbound });
  });

  it("a trace source (a tracer's propagation) that throws: the library's own headers go out, and nothing throws", () => {
    const host = app.get(ContextHost);
    const failing: TraceSource = {
      capture: () => undefined,
      traceOf: () => undefined,
      inject() {
        throw new Error('propagator boom');
      },
      logIds: () => undefined,
      run: (_record, fn) => fn(),
    };
    setTraceSource(host.options, failing);
    try {
      const headers = service.run(() => service.inject<Record<string, string>>({}), { headers: inbound });
      expect(headers['x-request-id']).toBe('inj-1');
      expect(TRACEPARENT_RE.exec(headers.traceparent ?? '')?.[1]).toBe(TRACE_ID);
    } finally {
      setTraceSource(host.options, undefined);
    }
  });

  it('outside a context it writes nothing', () => {
    expect(service.inject({})).toEqual({});
    const calls: string[] = [];
    service.inject({}, { set: (_c, name) => calls.push(name) });
    expect(calls).toEqual([]);
  });
});

describe('the contract round-trips: whatever a sender injects, a receiver extracts', () => {
  let sender: Awaited<ReturnType<typeof appWith>>;
  let receiver: Awaited<ReturnType<typeof appWith>>;
  beforeAll(async () => {
    sender = await appWith({ baggage: { fields: { tenant: 'tenant.id' } } });
    receiver = await appWith({ baggage: { fields: { tenant: 'tenant.id' } } });
  });
  afterAll(async () => {
    await sender.app.close();
    await receiver.app.close();
  });

  /** A carrier kind: how a sender writes it and how a receiver reads it, as users would. */
  interface Kind<C> {
    name: string;
    empty(): C;
    setter?: CarrierSetter<C>;
    getter?: CarrierGetter<C>;
    /** What crosses the wire (a serialised copy), so nothing is shared by reference. */
    wire(carrier: C): C;
  }
  const kinds: Kind<never>[] = [
    { name: 'plain object', empty: () => ({}), wire: (c: Record<string, string>) => ({ ...c }) },
    { name: 'fetch Headers', empty: () => new Headers(), getter: { get: (h: Headers, n: string) => h.get(n) ?? undefined }, wire: (h: Headers) => new Headers(h) },
    { name: 'SQS attributes', empty: () => ({}), setter: sqsSetter, getter: sqsGetter, wire: (c: SqsAttributes) => JSON.parse(JSON.stringify(c)) as SqsAttributes },
    { name: 'kafkajs headers', empty: () => ({}), setter: kafkaSetter, wire: (c: KafkaHeaders) => Object.fromEntries(Object.entries(c).map(([k, v]) => [k, Buffer.from(v as Buffer)])) },
  ] as unknown as Kind<never>[];

  const tracestateKey = fc.stringMatching(/^[a-z][a-z0-9_*/-]{0,15}$/);
  const tracestateValue = fc.stringMatching(/^[!-+\--<>-~]{1,16}$/);
  const input = fc.record({
    kind: fc.integer({ min: 0, max: kinds.length - 1 }),
    id: fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/),
    traceId: fc.stringMatching(/^[0-9a-f]{32}$/).filter((s) => /[1-9a-f]/.test(s)),
    parent: fc.stringMatching(/^[0-9a-f]{16}$/).filter((s) => /[1-9a-f]/.test(s)),
    sampled: fc.boolean(),
    tracestate: fc.uniqueArray(fc.tuple(tracestateKey, tracestateValue), { maxLength: 5, selector: ([key]) => key }),
    tenant: fc.option(fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }), { nil: undefined }),
    touch: fc.boolean(),
  });

  it('correlation id, trace id, flags, tracestate and declared baggage arrive; the parent id is the sender\'s fresh one (300 runs)', () => {
    fc.assert(
      fc.property(input, (x) => {
        const kind = kinds[x.kind] as unknown as Kind<object>;
        const inboundState = x.tracestate.map(([k, v]) => `${k}=${v}`).join(',');
        const inbound: Record<string, string> = { 'x-request-id': x.id, traceparent: `00-${x.traceId}-${x.parent}-0${x.sampled ? 1 : 0}` };
        if (inboundState !== '') inbound.tracestate = inboundState;
        if (x.tenant !== undefined && !x.touch) inbound.baggage = `tenant.id=${encodeURIComponent(x.tenant)}`;
        const sent = sender.service.run(() => {
          if (x.touch) current.tenant = x.tenant; // set through the object once it exists
          return kind.wire(sender.service.inject(kind.empty(), kind.setter));
        }, { headers: inbound });
        const got = receiver.service.run(() => ({ ...seen(receiver.service), spanId: receiver.service.trace!.spanId }), { headers: sent, getter: kind.getter });
        const wrote = kind.getter === undefined ? (sent as Record<string, unknown>).traceparent : kind.getter.get(sent, 'traceparent');
        const sentParent = TRACEPARENT_RE.exec(String(wrote))?.[2];
        expect({ ...got, spanId: undefined, parentId: undefined }).toEqual({
          id: x.id,
          traceId: x.traceId,
          parentId: undefined,
          sampled: x.sampled,
          tracestate: inboundState,
          tenant: x.tenant,
          spanId: undefined,
        });
        expect(got.parentId).toMatch(/^[0-9a-f]{16}$/);
        expect(got.parentId).not.toBe(x.parent);
        expect(got.parentId).toBe(sentParent);
      }),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------- pass-through services and declared baggage

let downstream: Server;
let downstreamUrl = '';
const received: IncomingHttpHeaders[] = [];

beforeAll(async () => {
  downstream = createServer((req, res) => {
    received.push(req.headers);
    res.end('ok');
  });
  await new Promise<void>((resolve) => downstream.listen(0, '127.0.0.1', resolve));
  downstreamUrl = `http://127.0.0.1:${(downstream.address() as AddressInfo).port}/`;
});
afterAll(() => new Promise<void>((resolve) => downstream.close(() => resolve())));

const fetchWithContext = propagateFetch(fetch);

@Controller()
class ForwardController {
  /** Forwards the request without ever reading the context. */
  @Get('forward')
  async forward(): Promise<string> {
    await fetchWithContext(downstreamUrl);
    return 'forwarded';
  }

  /** Reads the context (building the object) and changes a declared field before forwarding. */
  @Get('touch')
  async touch(): Promise<string> {
    current.tenant = 'changed';
    await fetchWithContext(downstreamUrl);
    return 'touched';
  }
}

describe.each(platforms)('declared baggage fields always go out (%s)', (_name, adapter) => {
  let app: INestApplication;
  afterEach(async () => {
    await app?.close();
    received.length = 0;
  });

  async function boot(propagateInbound: boolean): Promise<void> {
    @Module({ imports: [ContextModule.forRoot(Ctx, { baggage: { fields: { tenant: 'tenant.id' }, propagateInbound } })], controllers: [ForwardController] })
    class PassThroughModule {}
    app = await bootApp(PassThroughModule, adapter);
  }

  it('propagateInbound: false: a pass-through service forwards the declared field it received, and nothing undeclared', async () => {
    await boot(false);
    await request(app.getHttpServer()).get('/forward').set('baggage', 'tenant.id=acme,secret=1').expect(200, 'forwarded');
    expect(received[0]?.baggage).toBe('tenant.id=acme');
  });

  it('propagateInbound: true: the declared field and the other members', async () => {
    await boot(true);
    await request(app.getHttpServer()).get('/forward').set('baggage', 'other=2,tenant.id=acme').expect(200);
    expect(received[0]?.baggage).toBe('tenant.id=acme,other=2');
  });

  it('once the context exists, its current value goes out', async () => {
    await boot(false);
    await request(app.getHttpServer()).get('/touch').set('baggage', 'tenant.id=acme').expect(200, 'touched');
    expect(received[0]?.baggage).toBe('tenant.id=changed');
  });
});

// ---------------------------------------------------------------- the same round trip through real HTTP

@Controller()
class SeenController {
  constructor(private readonly service: ContextService<Ctx>) {}
  /** What the receiving handler sees, plus the id header as it arrived. */
  @Get('seen')
  seen(): ReturnType<typeof seen> {
    return seen(this.service);
  }
}

describe.each(platforms)('the round trip through the HTTP entry and the fetch client (%s)', (_name, adapter) => {
  let receiverApp: INestApplication;
  let url = '';
  let sender: Awaited<ReturnType<typeof appWith>>;
  beforeAll(async () => {
    @Module({ imports: [ContextModule.forRoot(Ctx, { baggage: { fields: { tenant: 'tenant.id' } } })], controllers: [SeenController] })
    class ReceiverModule {}
    receiverApp = await bootApp(ReceiverModule, adapter);
    await receiverApp.listen(0, '127.0.0.1');
    url = `${(await receiverApp.getUrl()).replace('[::1]', '127.0.0.1')}/seen`;
    sender = await appWith({ baggage: { fields: { tenant: 'tenant.id' } } });
  });
  afterAll(async () => {
    await receiverApp.close();
    await sender.app.close();
  });

  it('whatever the sender continues, the receiving handler sees: id, trace id, flags, tracestate, declared baggage (60 runs)', async () => {
    const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)).filter((s) => /[1-9a-f]/.test(s));
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          id: fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/),
          traceId: hex(32),
          parent: hex(16),
          sampled: fc.boolean(),
          tracestate: fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9_*/-]{0,15}$/), fc.stringMatching(/^[!-+\--<>-~]{1,16}$/)), { maxLength: 4, selector: ([key]) => key }),
          tenant: fc.option(fc.string({ minLength: 1, maxLength: 30, unit: 'grapheme' }), { nil: undefined }),
        }),
        async (x) => {
          const state = x.tracestate.map(([k, v]) => `${k}=${v}`).join(',');
          const inbound: Record<string, string> = { 'x-request-id': x.id, traceparent: `00-${x.traceId}-${x.parent}-0${x.sampled ? 1 : 0}` };
          if (state !== '') inbound.tracestate = state;
          if (x.tenant !== undefined) inbound.baggage = `tenant.id=${encodeURIComponent(x.tenant)}`;
          const response = await sender.service.run(() => fetchWithContext(url), { headers: inbound });
          expect(response.status).toBe(200);
          expect(response.headers.get('x-request-id')).toBe(x.id);
          const got = (await response.json()) as ReturnType<typeof seen>;
          expect({ ...got, parentId: undefined }).toEqual({ id: x.id, traceId: x.traceId, sampled: x.sampled, tracestate: state, tenant: x.tenant, parentId: undefined });
          expect(got.parentId).not.toBe(x.parent);
        },
      ),
      { numRuns: 60 },
    );
  }, 60_000);
});
