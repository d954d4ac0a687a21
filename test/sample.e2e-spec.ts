import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { ContextLogger } from 'nestjs-context/logger';
import { Test } from '@nestjs/testing';
import { ContextTester, ContextTestingModule } from 'nestjs-context/testing';
import { AppModule } from '../sample/app.module.js';
import { GreetingService } from '../sample/greeting.service.js';
import { MyContext } from '../sample/my-context.js';
import { startChain, type Chain } from '../sample/chain.js';
import { ReceiptLog } from '../sample/orders/receipts.js';
import { captureStdio } from './logging/helpers.js';
import { commentOf, traceOf } from './sql/helpers.js';
import { freePort, requireBroker } from './utils/brokers.js';
import { bootApp, platforms } from './utils/platforms.js';

describe.each(platforms)('the sample app (%s)', (_name, makeAdapter) => {
  let app: INestApplication;
  beforeAll(async () => {
    app = await bootApp(AppModule, makeAdapter);
  });
  afterAll(async () => {
    await app.close();
  });

  it('GET / gives each request a new correlation id, in the body and the header, on all four paths', async () => {
    const first = await request(app.getHttpServer()).get('/').expect(200);
    const second = await request(app.getHttpServer()).get('/').expect(200);
    for (const res of [first, second]) {
      const id = res.body.correlationId as string;
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.headers['x-request-id']).toBe(id);
      expect(res.body.accessPaths).toEqual({ ctxDecorator: id, contextService: id, injectedClass: id, currentContext: id });
      expect(res.body.userId).toBe('demo-user');
      expect(res.body.message).toBe(`hello demo-user, your request is ${id}`);
    }
    expect(first.body.correlationId).not.toBe(second.body.correlationId);
  });

  it('POST /graphql answers the hello query in the request context', async () => {
    const res = await request(app.getHttpServer())
      .post('/graphql')
      .set('x-request-id', 'my-id-3')
      .send({ query: '{ hello { correlationId message } }' })
      .expect(200);
    expect(res.headers['x-request-id']).toBe('my-id-3');
    expect(res.body).toEqual({ data: { hello: { correlationId: 'my-id-3', message: 'hello demo-user, your request is my-id-3' } } });
  });

  it('honours a valid inbound id', async () => {
    const res = await request(app.getHttpServer()).get('/').set('x-request-id', 'my-id-1').expect(200);
    expect(res.body.correlationId).toBe('my-id-1');
    expect(res.headers['x-request-id']).toBe('my-id-1');
  });

  it('ids for clients: exposed to browser code, in error bodies, taken from the edge proxy when the client sends none', async () => {
    const res = await request(app.getHttpServer()).get('/').set('x-edge-request-id', 'e-7').expect(200);
    expect(res.body.correlationId).toBe('edge-e-7');
    expect(res.headers['access-control-expose-headers']).toBe('x-request-id');
    const missing = await request(app.getHttpServer()).get('/no-such-page').set('x-request-id', 'my-id-2').expect(404);
    expect(missing.body.correlationId).toBe('my-id-2');
    expect(missing.headers['x-request-id']).toBe('my-id-2');
  });
});

describe("the sample's GreetingService, unit-tested with nestjs-context/testing (no HTTP server)", () => {
  it('greets the user of the context it is given', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [ContextTestingModule.forRoot(MyContext)],
      providers: [GreetingService],
    }).compile();
    const context = new MyContext({ correlationId: 'unit-1', source: 'manual' });
    context.userId = 'ada';
    const greeting = await moduleRef.get(ContextTester).runWith(context, () => moduleRef.get(GreetingService).greet());
    expect(greeting).toBe('hello ada, your request is unit-1');
  });
});

/**
 * The sample's microservice chain, as `npm run sample -- --demo` runs it: gateway (HTTP) → orders
 * (HTTP) → billing (TCP microservice) → receipts (BullMQ on the real Redis), and orders' statement
 * on the real PostgreSQL. Every log line of one request, in every service, carries that request's
 * correlation id and trace id, and so does the statement text PostgreSQL reports.
 */
describe('the sample chain: one request, one id in every service\'s log lines', () => {
  let chain: Chain;
  let capture: ReturnType<typeof captureStdio>;

  const linesOf = (correlationId: string) =>
    capture
      .lines()
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, string>)
      .filter((line) => line.correlationId === correlationId);

  beforeAll(async () => {
    await requireBroker('redis');
    await requireBroker('postgres');
    capture = captureStdio();
    try {
      chain = await startChain({ gatewayPort: 0, ordersPort: 0, billingPort: await freePort(), logger: new ContextLogger({ json: true, contextFields: ['userId'] }) });
    } catch (error) {
      capture.restore();
      throw error;
    }
  });
  afterAll(async () => {
    await chain?.close();
    capture?.restore();
  });

  it('gateway → orders → billing → receipts: the same correlation id and trace id on every line, a span id per hop', async () => {
    capture.clear();
    const res = await fetch(`${chain.gatewayUrl}/checkout/book`, { headers: { 'x-request-id': 'chain-1' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBe('chain-1');
    const body = (await res.json()) as {
      traceId: string;
      order: { orderId: string; receipt: string; seenCorrelationId: string; invoice: Record<string, string>; database: { statement: string; correlationId: string } };
    };
    expect(chain.receipts).toBe(true);
    expect(chain.databaseSkipped).toBeUndefined();
    expect(body.order).toMatchObject({ receipt: 'queued', seenCorrelationId: 'chain-1', invoice: { seenCorrelationId: 'chain-1', seenUserId: 'demo-user' } });
    // The database hop: the statement as PostgreSQL received it carries the request's id, trace and declared userId.
    const { statement, correlationId } = body.order.database;
    expect(statement).toMatch(/^SELECT current_query\(\) AS statement, \$1::text AS order_id \/\*.*\*\/$/);
    const comment = commentOf(statement);
    expect(comment).toEqual({ correlation_id: 'chain-1', traceparent: expect.any(String), userId: 'demo-user' });
    expect(correlationId).toBe('chain-1');
    expect(traceOf(comment.traceparent).traceId).toBe(body.traceId);
    expect(await chain.orders.get(ReceiptLog).waitFor(body.order.orderId)).toBe('chain-1');

    const lines = linesOf('chain-1');
    const services = new Set(lines.map((line) => line.context));
    expect([...services].sort()).toEqual(['Billing', 'Gateway', 'GatewayAccess', 'Orders', 'Receipts']);
    for (const line of lines) expect(line).toMatchObject({ traceId: body.traceId, userId: 'demo-user' });
    expect(lines.find((line) => line.context === 'Orders' && line.message.includes('PostgreSQL saw:'))?.message).toBe(
      `order ${body.order.orderId} recorded; PostgreSQL saw: ${statement}`,
    );
    const spanOf = (service: string) => new Set(lines.filter((line) => line.context === service).map((line) => line.spanId));
    const spans = ['Gateway', 'Orders', 'Billing', 'Receipts'].map((service) => [...spanOf(service)]);
    for (const span of spans) expect(span).toHaveLength(1);
    expect(new Set(spans.flat()).size).toBe(4);
  });

  it('40 concurrent checkouts: each request\'s lines carry only its own id', async () => {
    capture.clear();
    const ids = Array.from({ length: 40 }, (_, i) => `chain-c${i}`);
    const orders = await Promise.all(
      ids.map(async (id) => {
        const res = await fetch(`${chain.gatewayUrl}/checkout/item-${id}`, { headers: { 'x-request-id': id } });
        const body = (await res.json()) as { correlationId: string; order: { orderId: string; item: string; seenCorrelationId: string; database: { statement: string } } };
        expect(body.correlationId).toBe(id);
        expect(body.order.seenCorrelationId).toBe(id);
        expect(commentOf(body.order.database.statement).correlation_id).toBe(id);
        return body.order.orderId;
      }),
    );
    await Promise.all(orders.map((orderId) => chain.orders.get(ReceiptLog).waitFor(orderId)));
    for (const id of ids) {
      const lines = linesOf(id);
      expect(new Set(lines.map((line) => line.context))).toEqual(new Set(['Billing', 'Gateway', 'GatewayAccess', 'Orders', 'Receipts']));
      // Every line that names an order of this request names this request's item.
      for (const line of lines.filter((l) => /(checkout of|charging order) /.test(l.message))) expect(line.message).toContain(`item-${id}`);
    }
  });
});

describe('the sample chain without Redis or PostgreSQL', () => {
  it('skips the BullMQ step and the database hop, says so, and the rest of the chain still works', async () => {
    const capture = captureStdio();
    let chain: Chain | undefined;
    try {
      const closed = await freePort(); // nothing listens here
      chain = await startChain({
        gatewayPort: 0,
        ordersPort: 0,
        billingPort: await freePort(),
        redis: { host: '127.0.0.1', port: closed },
        postgres: { host: '127.0.0.1', port: closed, user: 'postgres', database: 'test' },
        logger: new ContextLogger({ json: true }),
      });
      const res = await fetch(`${chain.gatewayUrl}/checkout/pen`, { headers: { 'x-request-id': 'no-redis-1' } });
      const body = (await res.json()) as { order: { receipt: string; database: string; invoice: { seenCorrelationId: string } } };
      expect(chain.receipts).toBe(false);
      expect(body.order.receipt).toBe('skipped: Redis is not reachable');
      expect(chain.databaseSkipped).toMatch(/ECONNREFUSED/);
      expect(body.order.database).toBe('skipped: PostgreSQL did not answer at start');
      expect(body.order.invoice.seenCorrelationId).toBe('no-redis-1');
      expect(capture.lines().join('\n')).toMatch(/Redis is not reachable on 127\.0\.0\.1:\d+: the BullMQ receipts step is skipped/);
      expect(capture.lines().join('\n')).toMatch(
        /PostgreSQL on 127\.0\.0\.1:\d+ \(user postgres, database test\) did not answer a query \(connect ECONNREFUSED [^)]*\): the database hop is skipped/,
      );
    } finally {
      await chain?.close();
      capture.restore();
    }
  });
});
