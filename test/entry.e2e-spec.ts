import 'reflect-metadata';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { createPipelineModule, lenient, seen } from './fixtures/pipeline.module.js';

// Where the HTTP context is entered (src/entry/http-entry.ts): around Express's own `app.handle()`, and
// around the Fastify server's `request` listener with a native `onRequest` hook for requests that
// do not come through the server. These tests cover the ways an app is served besides `listen()`.

const HAPPY = [
  'middleware', 'guard', 'interceptor-before', 'pipe', 'ctx-decorator', 'injected', 'scoped-service',
  'current-context', 'service', 'after-await', 'interceptor-after',
];

type Handle = (req: IncomingMessage, res: ServerResponse, next?: unknown) => void;

async function create(adapter: ExpressAdapter | FastifyAdapter, options: { interceptor?: boolean; enterEarly?: boolean }): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({ imports: [createPipelineModule(options)] }).compile();
  const app = moduleRef.createNestApplication(adapter, { logger: false });
  await app.init();
  return app;
}

function stagesOf(id: string): string[] {
  return [...(seen.get(id)?.keys() ?? [])].sort();
}

const configurations = [
  ['default', {}],
  ['interceptor: false', { interceptor: false }],
] as const;

beforeEach(() => seen.clear());

describe.each(configurations)('Express served without listen(), through the app function (%s)', (_label, options) => {
  let app: INestApplication;
  let server: Server;
  beforeAll(async () => {
    app = await create(new ExpressAdapter(), options);
    // What serverless wrappers do: hand Node requests to the Express app function, no Nest server.
    const handler = app.getHttpAdapter().getInstance() as Handle;
    server = createServer((req, res) => handler(req, res));
  });
  afterAll(async () => {
    server.close();
    await app.close();
  });

  it('every stage sees one context, the id is echoed', async () => {
    const res = await request(server).get('/pipeline/ok').set('x-request-id', 'sls-1').set('x-user', 'u1');
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe('sls-1');
    expect(res.body).toEqual({ correlationId: 'sls-1', fromService: 'sls-1', userId: 'u1' });
    expect(stagesOf('sls-1')).toEqual([...HAPPY].sort());
  });

  it('a POST body is parsed inside the context', async () => {
    const res = await request(server).post('/pipeline/echo').set('x-request-id', 'sls-post').send({ a: 2 });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ correlationId: 'sls-post', body: { a: 2 } });
  });
});

describe.each(configurations)('Fastify requests that bypass the HTTP server, like inject() and serverless handlers (%s)', (_label, options) => {
  let app: INestApplication;
  let server: Server;
  beforeAll(async () => {
    app = await create(new FastifyAdapter(), options);
    const instance = app.getHttpAdapter().getInstance() as { ready(): Promise<unknown>; routing: Handle };
    await instance.ready();
    // Fastify's router entry point, which inject() and serverless handlers call instead of the server
    // (light-my-request itself cannot load under jest on Node 20: it requires an ES module).
    server = createServer((req, res) => instance.routing(req, res));
  });
  afterAll(async () => {
    lenient.on = false;
    server.close();
    await app.close();
  });

  it('guards, interceptors, pipes, handler and every access path share one context; the id is echoed', async () => {
    // Nest middleware runs in @fastify/middie's onRequest hook, which Fastify runs before the hook
    // that enters the context for requests outside the server: it sees no context on this path.
    lenient.on = true;
    const res = await request(server).get('/pipeline/ok').set('x-request-id', 'inj-1').set('x-user', 'u2');
    lenient.on = false;
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe('inj-1');
    expect(res.body).toEqual({ correlationId: 'inj-1', fromService: 'inj-1', userId: 'u2' });
    expect(stagesOf('inj-1')).toEqual(HAPPY.filter((s) => s !== 'middleware').sort());
  });

  it('a POST body is parsed inside the context', async () => {
    lenient.on = true;
    const res = await request(server).post('/pipeline/echo').set('x-request-id', 'inj-post').send({ b: 3 });
    lenient.on = false;
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ correlationId: 'inj-post', body: { b: 3 } });
  });

  it('an error response echoes the id', async () => {
    lenient.on = true;
    const res = await request(server).get('/pipeline/throw').set('x-request-id', 'inj-err');
    lenient.on = false;
    expect(res.status).toBe(500);
    expect(res.headers['x-request-id']).toBe('inj-err');
  });

  it('concurrent requests keep their own context', async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `inj-c${i}`);
    lenient.on = true;
    const results = await Promise.all(ids.map((id) => request(server).get('/pipeline/ok').set('x-request-id', id)));
    lenient.on = false;
    expect(results.map((r) => (r.body as { correlationId: string }).correlationId)).toEqual(ids);
    expect(results.map((r) => r.headers['x-request-id'])).toEqual(ids);
  });
});

describe('the entry adds no middleware layer and is taken off when the app closes', () => {
  it('Express: app.handle is wrapped while the app runs and restored by close()', async () => {
    const adapter = new ExpressAdapter();
    const express = adapter.getInstance() as { handle: Handle; router?: { stack: unknown[] } };
    const original = express.handle;
    const app = await create(adapter, {});
    expect(express.handle).not.toBe(original);
    const plain = await create(new ExpressAdapter(), { interceptor: false, enterEarly: false });
    const layers = (a: INestApplication) => (a.getHttpAdapter().getInstance() as { router: { stack: unknown[] } }).router.stack.length;
    expect(layers(app)).toBe(layers(plain));
    await plain.close();
    await app.close();
    expect(express.handle).toBe(original);
  });

  it('Fastify: the server keeps exactly one request listener, the entered one', async () => {
    const app = await create(new FastifyAdapter(), { interceptor: false });
    await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
    const server = app.getHttpServer() as Server;
    expect(server.listeners('request')).toHaveLength(1);
    const res = await request(server).get('/pipeline/ok').set('x-request-id', 'fy-1');
    expect(res.headers['x-request-id']).toBe('fy-1');
    expect(stagesOf('fy-1')).toEqual([...HAPPY].sort());
    await app.close();
  });
});
