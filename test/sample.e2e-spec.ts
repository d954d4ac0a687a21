import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { AppModule } from '../sample/app.module.js';
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

  it('honours a valid inbound id', async () => {
    const res = await request(app.getHttpServer()).get('/').set('x-request-id', 'my-id-1').expect(200);
    expect(res.body.correlationId).toBe('my-id-1');
    expect(res.headers['x-request-id']).toBe('my-id-1');
  });
});
