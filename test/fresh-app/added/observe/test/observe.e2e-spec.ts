// Added once the "@nestjs/observe" line of docs/observe.md's set-up is applied (createObserveModule(contextObserveOptions())):
// Observe's trace id is the correlation id, with and without an inbound id.
import { Controller, Get, INestApplication } from '@nestjs/common';
import { TracerService } from '@nestjs/observe';
import { Test, TestingModule } from '@nestjs/testing';
import { ContextService } from 'nestjs-context';
import request from 'supertest';
import { App } from 'supertest/types.js';
import { AppModule, ObserveInstrument } from './../src/app.module.js';
import { MyContext } from './../src/my-context.js';

@Controller('ids')
class IdsController {
  constructor(
    private readonly context: ContextService<MyContext>,
    private readonly tracer: TracerService,
  ) {}

  @Get()
  ids() {
    return { correlationId: this.context.correlationId, observe: this.tracer.currentTraceId() };
  }
}

describe('the README quick start with its @nestjs/observe line (e2e)', () => {
  let app: INestApplication<App>;

  beforeAll(async () => {
    const moduleFixture: TestingModule = await Test.createTestingModule(
      { imports: [AppModule], controllers: [IdsController] },
      { instrument: ObserveInstrument },
    ).compile();
    app = moduleFixture.createNestApplication();
    await app.init();
  });

  afterAll(async () => {
    await app.close();
  });

  it("an inbound x-request-id is the correlation id and Observe's trace id", async () => {
    const res = await request(app.getHttpServer()).get('/ids').set('x-request-id', 'my-id-2').expect(200);
    expect(res.headers['x-request-id']).toBe('my-id-2');
    expect(res.body).toEqual({ correlationId: 'my-id-2', observe: 'my-id-2' });
  });

  it("without one, the fresh id is the correlation id and Observe's trace id, different each time", async () => {
    const first = await request(app.getHttpServer()).get('/ids').expect(200);
    const second = await request(app.getHttpServer()).get('/ids').expect(200);
    for (const res of [first, second]) {
      const id = res.headers['x-request-id'];
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(res.body).toEqual({ correlationId: id, observe: id });
    }
    expect(first.headers['x-request-id']).not.toBe(second.headers['x-request-id']);
  });
});
