import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { createPipelineModule, lenient, seen } from './fixtures/pipeline.module.js';
import { bootApp, platforms } from './utils/platforms.js';

/** Asserts every stage of one request saw one and the same context object. */
function expectOneInstance(correlationId: string, stages: string[]): void {
  const bucket = seen.get(correlationId);
  expect(bucket).toBeDefined();
  expect([...bucket!.keys()].sort()).toEqual([...stages].sort());
  const instances = new Set(bucket!.values());
  expect(instances.size).toBe(1);
  expect((bucket!.values().next().value as { correlationId: string }).correlationId).toBe(correlationId);
}

const HAPPY = [
  'middleware', 'guard', 'interceptor-before', 'pipe', 'ctx-decorator', 'injected', 'scoped-service',
  'current-context', 'service', 'after-await', 'interceptor-after',
];

const configurations = [
  ['default: entry before the pipeline + global interceptor', {}],
  ['fastest: entry before the pipeline, no interceptor', { interceptor: false }],
] as const;
const matrix = platforms.flatMap(([name, makeAdapter]) => configurations.map(([label, options]) => [name, label, makeAdapter, options] as const));

describe.each(matrix)('every pipeline stage sees one context (%s, %s)', (_name, _label, makeAdapter, options) => {
  let app: INestApplication;
  beforeAll(async () => {
    app = await bootApp(createPipelineModule(options), makeAdapter);
  });
  afterAll(async () => {
    await app.close();
  });
  beforeEach(() => seen.clear());

  it('success path: middleware, guard, interceptor, pipe, handler, injection, service, currentContext', async () => {
    const res = await request(app.getHttpServer()).get('/pipeline/ok').set('x-request-id', 'req-1').set('x-user', 'u42');
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe('req-1');
    expect(res.body).toEqual({ correlationId: 'req-1', fromService: 'req-1', userId: 'u42' });
    expectOneInstance('req-1', HAPPY);
  });

  it('a fresh id is generated, echoed and used everywhere when none comes in', async () => {
    const res = await request(app.getHttpServer()).get('/pipeline/ok');
    const id = res.headers['x-request-id'] as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.correlationId).toBe(id);
    expectOneInstance(id, HAPPY);
  });

  it('POST with a parsed body keeps the context across body parsing', async () => {
    const res = await request(app.getHttpServer()).post('/pipeline/echo').set('x-request-id', 'post-1').send({ a: 1 });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ correlationId: 'post-1', body: { a: 1 } });
    expectOneInstance('post-1', ['middleware', 'guard', 'interceptor-before', 'post-handler', 'current-context', 'interceptor-after']);
  });

  it.each([
    ['guard', 403, ['middleware', 'guard', 'filter']],
    ['middleware', 403, ['middleware']],
  ])('error thrown in the %s: status %i, id echoed, same context', async (where, status, stages) => {
    const res = await request(app.getHttpServer()).get('/pipeline/ok').set('x-request-id', `fail-${where}`).set('x-fail', where);
    expect(res.status).toBe(status);
    expect(res.headers['x-request-id']).toBe(`fail-${where}`);
    expectOneInstance(`fail-${where}`, stages);
  });

  it('error thrown in a pipe reaches the filter inside the same context', async () => {
    const res = await request(app.getHttpServer()).get('/pipeline/bad').set('x-request-id', 'pipe-1');
    expect(res.status).toBe(400);
    expect(res.headers['x-request-id']).toBe('pipe-1');
    expect(res.body).toEqual({ statusCode: 400, correlationId: 'pipe-1' });
    expectOneInstance('pipe-1', ['middleware', 'guard', 'interceptor-before', 'pipe', 'filter']);
  });

  it('unhandled error in the handler: 500 through the filter, id echoed, same context', async () => {
    const res = await request(app.getHttpServer()).get('/pipeline/throw').set('x-request-id', 'boom-1');
    expect(res.status).toBe(500);
    expect(res.headers['x-request-id']).toBe('boom-1');
    expect(res.body).toEqual({ statusCode: 500, correlationId: 'boom-1' });
    expectOneInstance('boom-1', [...HAPPY.filter((s) => s !== 'interceptor-after'), 'filter']);
  });

  it('unknown route (404) and malformed JSON body (400) still echo the id', async () => {
    const notFound = await request(app.getHttpServer()).get('/nowhere').set('x-request-id', 'nf-1');
    expect(notFound.status).toBe(404);
    expect(notFound.headers['x-request-id']).toBe('nf-1');
    const malformed = await request(app.getHttpServer())
      .post('/pipeline/echo')
      .set('x-request-id', 'json-1')
      .set('content-type', 'application/json')
      .send('{"a":');
    expect(malformed.status).toBe(400);
    expect(malformed.headers['x-request-id']).toBe('json-1');
  });
});

describe.each(platforms)('enterEarly: false — the interceptor alone enters the context (%s)', (_name, makeAdapter) => {
  let app: INestApplication;
  beforeAll(async () => {
    lenient.on = true;
    app = await bootApp(createPipelineModule({ enterEarly: false }), makeAdapter);
  });
  afterAll(async () => {
    lenient.on = false;
    await app.close();
  });
  beforeEach(() => seen.clear());

  it('handler-side stages share one context; middleware and guards run before it exists', async () => {
    const res = await request(app.getHttpServer()).get('/pipeline/ok').set('x-request-id', 'late-1').set('x-user', 'u1');
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe('late-1');
    expect(res.body).toEqual({ correlationId: 'late-1', fromService: 'late-1' });
    expectOneInstance('late-1', ['interceptor-before', 'pipe', 'ctx-decorator', 'injected', 'scoped-service', 'current-context', 'service', 'after-await', 'interceptor-after']);
  });
});
