import 'reflect-metadata';
import { Controller, Get, Inject, Module, Query, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxyFactory, MessagePattern, Payload, Transport, type ClientProxy } from '@nestjs/microservices';
import pg from 'pg';
import { firstValueFrom } from 'rxjs';
import request from 'supertest';
import { ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { ContextMicroservicesModule } from '../../src/integrations/microservices/index.js';
import { commentPg } from '../../src/integrations/sql/index.js';
import { freePort, requireBroker } from '../utils/brokers.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { commentOf, INBOUND_PARENT, INBOUND_TRACEPARENT, PG, TRACE_ID, traceOf } from './helpers.js';

/**
 * A microservice handler's statements carry the context its message brought: a gateway request
 * (known `x-request-id` and `traceparent`) sends a TCP message; the handler runs its statements
 * through a `commentPg` pool and reads each one back from PostgreSQL (`current_query()`).
 */

class Ctx {
  correlationId: string;
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

const POOL = Symbol('pool');
const CLIENT = Symbol('client');

interface Ran {
  handlerId: string | undefined;
  texts: string[];
}

@Controller()
class SqlHandler {
  constructor(
    @Inject(POOL) private readonly pool: pg.Pool,
    private readonly context: ContextService<Ctx>,
  ) {}

  @MessagePattern('sql')
  async run(@Payload() key: string): Promise<Ran> {
    const texts: string[] = [];
    for (let i = 0; i < 2; i++) {
      const { rows } = await this.pool.query<{ q: string }>('SELECT current_query() AS q, $1::text AS key', [key]);
      texts.push(rows[0]!.q);
    }
    return { handlerId: this.context.correlationId, texts };
  }
}

@Controller()
class GatewayController {
  constructor(@Inject(CLIENT) private readonly client: ClientProxy) {}

  @Get('via-tcp')
  via(@Query('key') key: string): Promise<Ran> {
    return firstValueFrom(this.client.send<Ran>('sql', key));
  }
}

describe('a microservice handler’s statements carry the message’s context (TCP)', () => {
  let gateway: INestApplication;
  let service: INestMicroservice;
  let client: ClientProxy;
  let pool: pg.Pool;

  beforeAll(async () => {
    await requireBroker('postgres');
    pool = commentPg(new pg.Pool({ ...PG, max: 4 }));
    const options = { host: '127.0.0.1', port: await freePort() };
    @Module({
      imports: [ContextModule.forRoot(Ctx), ContextMicroservicesModule.forRoot()],
      controllers: [SqlHandler],
      providers: [{ provide: POOL, useValue: pool }],
    })
    class ServiceModule {}
    service = await NestFactory.createMicroservice(ServiceModule, { transport: Transport.TCP, options, logger: false });
    await service.listen();
    client = ClientProxyFactory.create({ transport: Transport.TCP, options }) as unknown as ClientProxy;
    @Module({
      imports: [ContextModule.forRoot(Ctx), ContextMicroservicesModule.forRoot()],
      controllers: [GatewayController],
      providers: [{ provide: CLIENT, useValue: client }],
    })
    class GatewayModule {}
    gateway = await bootApp(GatewayModule, platforms[0][1]);
  });
  afterAll(async () => {
    await gateway?.close();
    client?.close();
    await service?.close();
    await pool?.end();
  });

  it('50 overlapping requests: each handler statement carries its own request’s id, the trace, a fresh parent id', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `msg-${i}`);
    const results = await Promise.all(
      keys.map(async (key) => {
        const res = await request(gateway.getHttpServer()).get(`/via-tcp?key=${key}`).set('x-request-id', `sql-${key}`).set('traceparent', INBOUND_TRACEPARENT).expect(200);
        return { key, ran: res.body as Ran };
      }),
    );
    const parents = new Set<string>();
    for (const { key, ran } of results) {
      expect(ran.handlerId).toBe(`sql-${key}`);
      expect(ran.texts).toHaveLength(2);
      for (const text of ran.texts) {
        expect(text).toContain(`$1::text AS key`);
        const comment = commentOf(text);
        expect(comment.correlation_id).toBe(`sql-${key}`);
        const trace = traceOf(comment.traceparent);
        expect(trace.traceId).toBe(TRACE_ID);
        expect(trace.parentId).not.toBe(INBOUND_PARENT);
        parents.add(trace.parentId);
      }
    }
    expect(parents.size).toBe(100); // a fresh parent id per statement
  });

  it('a message sent outside any context: the handler’s statements carry the fresh context it got', async () => {
    const ran = await firstValueFrom(client.send<Ran>('sql', 'outside'));
    expect(ran.handlerId).toMatch(/^[0-9a-f-]{36}$/);
    for (const text of ran.texts) expect(commentOf(text).correlation_id).toBe(ran.handlerId);
  });
});
