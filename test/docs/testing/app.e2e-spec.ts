// app.e2e-spec.ts
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { AppModule } from './app.module.js';

describe('the correlation id over HTTP (e2e)', () => {
  let app: INestApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
  });
  afterAll(() => app.close());

  it('adopts the inbound x-request-id and echoes it', async () => {
    const res = await request(app.getHttpServer()).get('/orders/mine').set('x-request-id', 'e2e-1').expect(200);
    expect(res.headers['x-request-id']).toBe('e2e-1');
    expect(res.body).toEqual({ correlationId: 'e2e-1' });
  });

  it('makes a fresh id when none comes in', async () => {
    const res = await request(app.getHttpServer()).get('/orders/mine').expect(200);
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.correlationId).toBe(res.headers['x-request-id']);
  });

  it('puts the id in error bodies (correlationId.errorBody)', async () => {
    const res = await request(app.getHttpServer()).get('/orders/42').set('x-request-id', 'e2e-2').expect(404);
    expect(res.body).toEqual({ statusCode: 404, message: 'no order 42', error: 'Not Found', correlationId: 'e2e-2' });
  });
});
