/**
 * Order fixture, file 3: an HTTP app with another context class and other options (its own id
 * headers, listeners that inherit the request's context). Requests get that class and echo the id
 * under its own header; an event emitted in a request reaches its listener in the request's context.
 */
import 'reflect-metadata';
import { Controller, Get, Injectable, Module, type INestApplication } from '@nestjs/common';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { ContextModule, ContextService, type ContextInit } from 'nestjs-context';
import { ContextEventEmitterModule } from 'nestjs-context/event-emitter';
import { look, record, type Look } from './observe.js';

class OrderContextB {
  readonly correlationId: string;
  readonly app = 'B';
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

@Injectable()
class Audit {
  readonly heard: Look[] = [];
  constructor(private readonly context: ContextService<OrderContextB>) {}
  @OnEvent('order.audit')
  onAudit(): void {
    this.heard.push(look(this.context));
  }
}

@Controller()
class WhoController {
  constructor(
    private readonly context: ContextService<OrderContextB>,
    private readonly events: EventEmitter2,
    private readonly audit: Audit,
  ) {}
  @Get('who') who(): { handler: Look; listener: Look | undefined; isB: boolean } {
    this.events.emit('order.audit');
    return { handler: look(this.context), listener: this.audit.heard.at(-1), isB: this.context.get() instanceof OrderContextB };
  }
}

@Module({
  imports: [
    ContextModule.forRoot(OrderContextB, { correlationId: { requestHeaders: ['x-order-id'], responseHeader: 'x-order-id' } }),
    EventEmitterModule.forRoot(),
    ContextEventEmitterModule.forRoot({ mode: 'inherit' }),
  ],
  controllers: [WhoController],
  providers: [Audit],
})
class OtherClassApp {}

const name = (): string => expect.getState().currentTestName ?? '';

describe('an HTTP app with another context class and options', () => {
  let app: INestApplication;
  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [OtherClassApp] }).compile();
    app = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
    await app.init();
  });
  afterAll(() => app?.close());

  it('a request gets its class and the id of its own header, echoed; the listener inherits it', async () => {
    const res = await request(app.getHttpServer()).get('/who').set('x-order-id', 'order-1').set('x-request-id', 'not-this-one');
    record(import.meta.url, name(), { status: res.status, body: res.body, echoed: res.headers['x-order-id'] });
    expect(res.status).toBe(200);
    expect(res.headers['x-order-id']).toBe('order-1');
    expect(res.body).toEqual({
      handler: { active: true, cls: 'OrderContextB', id: 'order-1' },
      listener: { active: true, cls: 'OrderContextB', id: 'order-1' },
      isB: true,
    });
  });

  it('a request without an id gets a fresh one', async () => {
    const res = await request(app.getHttpServer()).get('/who');
    record(import.meta.url, name(), { status: res.status, body: res.body });
    expect(res.body.handler).toEqual({ active: true, cls: 'OrderContextB', id: 'fresh' });
    expect(res.headers['x-order-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
