// Replaces the generated test/app.e2e-spec.ts (which expects `Hello World!`) once the README's quick
// start is applied. Boots AppModule with Observe's instrumentation on, as the generated main.ts does.
import { Test, TestingModule } from '@nestjs/testing';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { App } from 'supertest/types.js';
import { AppModule, ObserveInstrument } from './../src/app.module.js';

describe('the README quick start in an app from nest new (e2e)', () => {
  let app: INestApplication<App>;

  beforeAll(async () => {
    const moduleFixture: TestingModule = await Test.createTestingModule(
      { imports: [AppModule] },
      { instrument: ObserveInstrument },
    ).compile();
    app = moduleFixture.createNestApplication();
    await app.init();
  });

  afterAll(async () => {
    await app.close();
  });

  it('adopts an inbound x-request-id: the response header and the body carry it', async () => {
    const res = await request(app.getHttpServer()).get('/').set('x-request-id', 'my-id-1').expect(200);
    expect(res.headers['x-request-id']).toBe('my-id-1');
    expect(res.text).toBe('Hello, World! my-id-1');
  });

  it('makes a fresh id for a request without one, different each time', async () => {
    const first = await request(app.getHttpServer()).get('/').expect(200);
    const second = await request(app.getHttpServer()).get('/').expect(200);
    for (const res of [first, second]) {
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(res.text).toBe(`Hello, World! ${res.headers['x-request-id']}`);
    }
    expect(first.headers['x-request-id']).not.toBe(second.headers['x-request-id']);
  });

  it('rejects an invalid inbound id and answers with a fresh one', async () => {
    const res = await request(app.getHttpServer()).get('/').set('x-request-id', 'not valid!').expect(200);
    expect(res.headers['x-request-id']).not.toBe('not valid!');
    expect(res.text).toBe(`Hello, World! ${res.headers['x-request-id']}`);
  });
});
