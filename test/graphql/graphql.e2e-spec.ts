/**
 * GraphQL end to end, on Apollo (Express, Fastify) and Mercurius (Fastify), over HTTP and WebSocket
 * on loopback: one context per operation shared by every resolver, field resolver, DataLoader batch,
 * guard, interceptor, pipe and filter; one per subscription, continued from the connection and kept
 * for all its events; no cross-talk under concurrency.
 */
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { GraphQLSchemaHost } from '@nestjs/graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { ContextModule } from 'nestjs-context';
import { ContextGraphQLModule } from 'nestjs-context/graphql';
import { Bus, filteredWith, GqlContext, graphqlModule, sleep, subscribedWith, type Driver, type Probe } from './app.js';

const setups = [
  ['Apollo on Express', 'apollo', () => new ExpressAdapter()],
  ['Apollo on Fastify', 'apollo', () => new FastifyAdapter()],
  ['Mercurius on Fastify', 'mercurius', () => new FastifyAdapter()],
] as const;

const PROBE = 'service current param injected sameObject label traceId spanId baggage outbound source';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

interface GqlResponse<T> {
  status: number;
  requestId: string | null;
  body: T;
}
interface Result<D> {
  data?: D;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

async function boot(driver: Driver, makeAdapter: () => ExpressAdapter | FastifyAdapter, module = graphqlModule(driver, { errorExtension: 'requestId' })): Promise<{ app: INestApplication; url: string }> {
  const ref = await Test.createTestingModule({ imports: [module] }).compile();
  const app = ref.createNestApplication(makeAdapter(), { logger: false });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, url: `http://127.0.0.1:${port}/graphql` };
}

async function post<T>(url: string, body: unknown, headers: Record<string, string> = {}): Promise<GqlResponse<T>> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: response.status, requestId: response.headers.get('x-request-id'), body: (await response.json()) as T };
}

/** A graphql-ws client sending `headers` on the handshake and `connectionParams` in connection_init. */
function connect(url: string, connectionParams: Record<string, unknown>, headers: Record<string, string> = {}): Client {
  class HandshakeSocket extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers });
    }
  }
  return createClient({ url: url.replace('http', 'ws'), webSocketImpl: HandshakeSocket, connectionParams, retryAttempts: 0, lazy: false });
}

interface TickEvent {
  ticks: { n: number; seen: Probe };
}

/** Subscribes with `label` and collects `count` events, then completes the subscription. */
async function collect(client: Client, label: string, count: number): Promise<TickEvent[]> {
  const events: TickEvent[] = [];
  const iterator = client.iterate<TickEvent>({
    query: `subscription ($label: String!) { ticks(label: $label) { n seen { ${PROBE} } } }`,
    variables: { label },
  });
  for await (const result of iterator) {
    if (result.errors !== undefined) throw new Error(`subscription ${label}: ${JSON.stringify(result.errors)}`);
    events.push(result.data as TickEvent);
    if (events.length === count) break;
  }
  return events;
}

/** Waits (bounded) until `condition` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await sleep(10);
  if (!condition()) throw new Error(`timed out waiting for ${what}`);
}

function expectAllPaths(seen: Probe, id: string): void {
  expect([seen.service, seen.current, seen.param, seen.injected]).toEqual([id, id, id, id]);
  expect(seen.sameObject).toBe(true);
  expect(seen.outbound).toBe(id);
}

/**
 * Each driver with the integration, and with `ContextModule` alone: queries and mutations over HTTP
 * already run in the request's context without it (pinned down here); operations over a WebSocket
 * need it.
 */
const cases = setups.flatMap(([name, driver, makeAdapter]) => [
  [`${name}, with ContextGraphQLModule`, driver, makeAdapter, true] as const,
  [`${name}, ContextModule alone`, driver, makeAdapter, false] as const,
]);

describe.each(cases)('GraphQL on %s', (_name, driver, makeAdapter, integrated) => {
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    ({ app, url } = await boot(driver, makeAdapter, graphqlModule(driver, integrated ? { errorExtension: 'requestId' } : false)));
  });
  afterAll(async () => {
    await app?.close();
  });

  it('runs a query in the request context: resolver, nested field resolvers and one DataLoader batch; the id is echoed', async () => {
    const query = `{ orders(count: 3, wait: 2) { id seen { ${PROBE} } customer { id batchSeen batchSize seen { ${PROBE} } } } }`;
    const res = await post<Result<{ orders: { seen: Probe; customer: { batchSeen: string; batchSize: number; seen: Probe } }[] }>>(
      url,
      { query },
      { 'x-request-id': 'query-1', traceparent: TRACEPARENT, baggage: 'tenant=t1' },
    );
    expect(res.requestId).toBe('query-1');
    expect(res.body.errors).toBeUndefined();
    const orders = res.body.data!.orders;
    expect(orders).toHaveLength(3);
    const spans = new Set<string>();
    for (const order of orders) {
      for (const seen of [order.seen, order.customer.seen]) {
        expectAllPaths(seen, 'query-1');
        expect(seen.traceId).toBe(TRACE_ID);
        expect(seen.baggage).toBe('tenant=t1');
        expect(seen.source).toBe('http');
        spans.add(seen.spanId);
      }
      expect(order.customer.batchSeen).toBe('query-1');
      expect(order.customer.batchSize).toBe(3);
    }
    expect(spans.size).toBe(1); // one context for the whole operation
  });

  it('guard, interceptor, pipe and resolver write into one context object', async () => {
    const res = await post<Result<{ pipeline: string[] }>>(url, { query: '{ pipeline(value: "x") }' }, { 'x-request-id': 'pipe-1' });
    expect(res.requestId).toBe('pipe-1');
    expect(res.body.data!.pipeline).toEqual(['guard', 'interceptor', 'pipe', 'resolver']);
  });

  it('a failing mutation carries the id header; the filter reads what the guard wrote; the id is in the error extensions when asked', async () => {
    const res = await post<Result<{ fail: boolean }>>(url, { query: 'mutation { fail(reason: "boom") }' }, { 'x-request-id': 'fail-1' });
    expect(res.requestId).toBe('fail-1');
    expect(res.body.errors).toHaveLength(1);
    expect(res.body.errors![0]!.message).toBe('filtered boom for guard:fail-1');
    expect(res.body.errors![0]!.extensions?.requestId).toBe(integrated ? 'fail-1' : undefined);
  });

  it('@Ctx() finds the HTTP request\'s context when the async chain was lost before the resolver', async () => {
    const res = await post<Result<{ lost: string }>>(url, { query: '{ lost }' }, { 'x-request-id': 'lost-1' });
    expect(res.body).toEqual({ data: { lost: 'lost-1/true' } });
  });

  it('the operations of one batched HTTP request share its context', async () => {
    const body = [{ query: `{ probe { ${PROBE} } }` }, { query: `{ probe(wait: 3) { ${PROBE} } }` }];
    const res = await post<Result<{ probe: Probe }>[]>(url, body, { 'x-request-id': 'batch-1' });
    expect(res.requestId).toBe('batch-1');
    expect(res.body).toHaveLength(2);
    const spans = res.body.map((r) => {
      expectAllPaths(r.data!.probe, 'batch-1');
      return r.data!.probe.spanId;
    });
    expect(new Set(spans).size).toBe(1);
  });

  it('300 concurrent operations with random delays: each sees only its own id, at every level', async () => {
    const query = `query ($wait: Int!) { orders(count: 3, wait: $wait) { seen { ${PROBE} } customer { batchSeen batchSize seen { ${PROBE} } } } }`;
    let reads = 0;
    const mismatches: string[] = [];
    await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const id = `op-${i}`;
        const res = await post<Result<{ orders: { seen: Probe; customer: { batchSeen: string; batchSize: number; seen: Probe } }[] }>>(
          url,
          { query, variables: { wait: Math.floor(Math.random() * 20) } },
          { 'x-request-id': id },
        );
        if (res.requestId !== id) mismatches.push(`${id}: header ${res.requestId}`);
        for (const order of res.body.data?.orders ?? []) {
          for (const seen of [order.seen, order.customer.seen]) {
            for (const value of [seen.service, seen.current, seen.param, seen.injected, seen.outbound]) {
              reads++;
              if (value !== id) mismatches.push(`${id}: saw ${value}`);
            }
          }
          reads++;
          if (order.customer.batchSeen !== id || order.customer.batchSize !== 3) mismatches.push(`${id}: batch ${order.customer.batchSeen}/${order.customer.batchSize}`);
        }
      }),
    );
    expect(mismatches).toEqual([]);
    expect(reads).toBe(300 * 3 * 11);
  });

  if (!integrated) return;

  it('subscriptions: one context each, continued from the connection, alive for all 50 events, two on one socket apart', async () => {
    subscribedWith.clear();
    const bus = app.get(Bus);
    // Socket 1: ids and trace in connectionParams; two subscriptions on it.
    const s1 = connect(url, { 'x-request-id': 'sock-1', traceparent: TRACEPARENT, baggage: 'tenant=t1' });
    // Socket 2: the handshake header wins over a parameter of the same name (nested `headers` form).
    const s2 = connect(url, { headers: { 'x-request-id': 'params-loser' } }, { 'x-request-id': 'sock-2' });
    // Socket 3: a handshake the trust policy refuses: its parameters are ignored.
    const s3 = connect(url, { 'x-request-id': 'untrusted', traceparent: TRACEPARENT }, { 'x-untrusted': '1' });
    try {
      const runs = [collect(s1, 'a', 50), collect(s1, 'b', 50), collect(s2, 'c', 50), collect(s3, 'd', 50)];
      await until(() => bus.subscribers === 4, 'four subscriptions');
      for (let n = 1; n <= 50; n += 10) {
        await Promise.all(
          Array.from({ length: 10 }, (_, k) => post<Result<{ publish: boolean }>>(url, { query: `mutation { publish(n: ${n + k}) }` }, { 'x-request-id': `pub-${n + k}` })),
        );
      }
      const [a, b, c, d] = await Promise.all(runs);

      const check = (events: TickEvent[], label: string, id: string | undefined): Probe => {
        expect(events).toHaveLength(50);
        expect(new Set(events.map((e) => e.ticks.n))).toEqual(new Set(Array.from({ length: 50 }, (_, i) => i + 1)));
        const first = events[0]!.ticks.seen;
        for (const { ticks } of events) {
          expectAllPaths(ticks.seen, id ?? first.service);
          expect(ticks.seen.label).toBe(label); // written at subscribe time, on this subscription's own object
          expect(ticks.seen.spanId).toBe(first.spanId); // one context for every event
          expect(ticks.seen.source).toBe('graphql');
        }
        const atSubscribe = subscribedWith.get(label)!;
        expect(atSubscribe).toEqual({ service: first.service, current: first.service, param: first.service, sameObject: true });
        expect(filteredWith.get(label)).toEqual(new Set([first.service])); // the filter ran in it for every event
        return first;
      };
      const pa = check(a, 'a', 'sock-1');
      const pb = check(b, 'b', 'sock-1');
      const pc = check(c, 'c', 'sock-2');
      const pd = check(d, 'd', undefined);
      expect(pa.traceId).toBe(TRACE_ID);
      expect(pb.traceId).toBe(TRACE_ID);
      expect(pa.baggage).toBe('tenant=t1');
      expect(pa.spanId).not.toBe(pb.spanId); // two subscriptions on one socket: two contexts
      expect(pd.service).not.toBe('untrusted');
      expect(pd.service).not.toMatch(/^pub-/);
      expect(pd.traceId).not.toBe(TRACE_ID);
      expect(pc.traceId).not.toBe(TRACE_ID);
      // Completing a subscription ends its iterator (through the wrapper, inside its context).
      // Mercurius' filter is an async generator: its return() waits for the pending event, so
      // one more is published.
      await post(url, { query: 'mutation { publish(n: 51) }' });
      await until(() => bus.subscribers === 0, 'the subscriptions to end');
    } finally {
      await Promise.all([s1.dispose(), s2.dispose(), s3.dispose()]);
    }
  });

  it('a query sent over the WebSocket gets its own context, continued from the connection', async () => {
    const client = connect(url, { 'x-request-id': 'ws-query' });
    try {
      const run = async (): Promise<Probe> => {
        for await (const result of client.iterate<{ probe: Probe }>({ query: `{ probe(wait: 2) { ${PROBE} } }` })) return result.data!.probe;
        throw new Error('no result');
      };
      const [one, two] = await Promise.all([run(), run()]);
      expectAllPaths(one, 'ws-query');
      expectAllPaths(two, 'ws-query');
      expect(one.spanId).not.toBe(two.spanId);
    } finally {
      await client.dispose();
    }
  });
});

describe('ContextGraphQLModule set-up', () => {
  it('leaves the correlation id out of error extensions by default', async () => {
    const { app, url } = await boot('apollo', () => new ExpressAdapter(), graphqlModule('apollo'));
    try {
      const res = await post<Result<{ fail: boolean }>>(url, { query: 'mutation { fail(reason: "boom") }' }, { 'x-request-id': 'plain-1' });
      expect(res.requestId).toBe('plain-1');
      expect(res.body.errors![0]!.message).toBe('filtered boom for guard:plain-1');
      expect(JSON.stringify(res.body.errors![0]!.extensions ?? {})).not.toContain('plain-1');
    } finally {
      await app.close();
    }
  });

  it.each(setups)('with enterEarly: false, finds the HTTP request of the operation on %s', async (name, driver, makeAdapter) => {
    const { app, url } = await boot(driver, makeAdapter, graphqlModule(driver, {}, { enterEarly: false }));
    try {
      const query = `{ orders(count: 2, wait: 1) { seen { ${PROBE} } customer { batchSeen seen { ${PROBE} } } } }`;
      const res = await post<Result<{ orders: { seen: Probe; customer: { batchSeen: string; seen: Probe } }[] }>>(url, { query }, { 'x-request-id': 'late-1' });
      // Apollo on Fastify hands resolvers the request without its reply: nothing to echo the id on
      // (docs/graphql.md, caveats); the default entry (enterEarly) echoes it before GraphQL runs.
      expect(res.requestId).toBe(name === 'Apollo on Fastify' ? null : 'late-1');
      for (const order of res.body.data!.orders) {
        expectAllPaths(order.seen, 'late-1');
        expectAllPaths(order.customer.seen, 'late-1');
        expect(order.customer.batchSeen).toBe('late-1');
        expect(order.seen.spanId).toBe(order.customer.seen.spanId);
      }
    } finally {
      await app.close();
    }
  });

  it('unwraps the resolvers when the app closes', async () => {
    const { app } = await boot('mercurius', () => new FastifyAdapter());
    const fields = app.get(GraphQLSchemaHost).schema.getQueryType()!.getFields();
    const wrapped = Symbol.for('nestjs-context:graphql-wrapped');
    const marked = (): boolean => (fields.probe!.resolve as unknown as Record<symbol, unknown>)[wrapped] === true;
    expect(marked()).toBe(true);
    await app.close();
    expect(marked()).toBe(false);
  });

  it('says what is missing when the app has no GraphQL schema', async () => {
    const ref = await Test.createTestingModule({ imports: [ContextModule.forRoot(GqlContext), ContextGraphQLModule.forRoot()] }).compile();
    const app = ref.createNestApplication(new ExpressAdapter(), { logger: false });
    await expect(app.init()).rejects.toThrow(/no GraphQL schema.*Import GraphQLModule\.forRoot/);
    await app.close();
  });

  it.each([
    [{ errorExtension: '' }, /errorExtension must be a boolean or a non-empty string, got ""/],
    [{ connectionParams: 'yes' }, /connectionParams must be a boolean, got string/],
  ])('rejects %j with a message that says how to fix it', async (options, message) => {
    const ref = Test.createTestingModule({ imports: [ContextModule.forRoot(GqlContext), ContextGraphQLModule.forRoot(options as never)] });
    await expect(ref.compile()).rejects.toThrow(message);
  });

  it('says to import ContextModule when it is missing', async () => {
    const ref = Test.createTestingModule({ imports: [ContextGraphQLModule.forRoot()] });
    await expect(ref.compile()).rejects.toThrow(/ContextGraphQLModule: no ContextModule found/);
  });
});
