// nestjs-context with @nestjs/observe in one process (HTTP only: Jest cannot load Observe's RPC
// instrumentation, see observe.e2e-spec.ts): the id under the app's own trust policy, the id Observe
// minted adopted when the context opens after Observe's request hook (`enterEarly: false`), and
// ContextLogger's JSON lines next to Observe's `traceId`.
import 'reflect-metadata';
import { jest } from '@jest/globals';
import { Controller, Get, Logger, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { createObserveModule, TracerService } from '@nestjs/observe';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import request from 'supertest';
import { ContextModule, ContextService, type ContextModuleOptions } from '../../src/index.js';
import { ContextLogger } from '../../src/integrations/logger/index.js';
import { contextObserveOptions } from '../../src/integrations/observe/index.js';
import { DEFAULT_ID } from '../utils/ids.js';

/** The app's context class. */
class AppContext {}

const { ObserveModule, ObserveInstrument } = createObserveModule(contextObserveOptions());

@Controller()
class IdsController {
  private readonly logger = new Logger('IdsController');
  constructor(
    private readonly context: ContextService,
    private readonly tracer: TracerService,
  ) {}

  @Get('ids')
  ids(): { correlationId: string | undefined; observe: string | null } {
    this.logger.log('ids');
    return { correlationId: this.context.correlationId, observe: this.tracer.currentTraceId() };
  }
}

/** An app with the given ContextModule options; Observe's collector is a closed loopback port (nothing leaves the machine). */
async function boot(adapter: ExpressAdapter | FastifyAdapter, options: ContextModuleOptions<AppContext>): Promise<INestApplication> {
  @Module({
    imports: [
      ContextModule.forRoot(AppContext, options),
      ObserveModule.forRoot({ appKey: 'k', appSecret: 's', serviceId: 'svc', endpoint: 'http://127.0.0.1:9', runtimeMetrics: false }),
    ],
    controllers: [IdsController],
  })
  class AppModule {}
  const app = await NestFactory.create(AppModule, adapter, { logger: new ContextLogger({ json: true }), instrument: ObserveInstrument });
  await app.init();
  if (adapter instanceof FastifyAdapter) await adapter.getInstance().ready();
  return app;
}

/** The JSON lines written to stdout while `fn` runs. */
async function jsonLines<R>(fn: () => Promise<R>): Promise<{ result: R; lines: Record<string, unknown>[] }> {
  const lines: Record<string, unknown>[] = [];
  const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    for (const line of String(chunk).split('\n')) if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
    return true;
  });
  try {
    return { result: await fn(), lines };
  } finally {
    write.mockRestore();
  }
}

describe.each([
  ['express', () => new ExpressAdapter()],
  ['fastify', () => new FastifyAdapter()],
] as const)('@nestjs/observe in one process (%s)', (_name, adapter) => {
  const apps: INestApplication[] = [];
  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  it.each([
    ['the context opens first (default)', {}],
    ['the context opens after Observe (enterEarly: false): it adopts the id Observe minted', { enterEarly: false }],
  ] as const)('no inbound id, %s: one fresh UUIDv7', async (_case, options) => {
    const app = await boot(adapter(), options);
    apps.push(app);
    const res = await request(app.getHttpServer()).get('/ids');
    const id = res.headers['x-request-id'] as string;
    expect(id).toMatch(DEFAULT_ID);
    expect(res.body).toEqual({ correlationId: id, observe: id });
  });

  it('an inbound id the trust policy refuses is used by neither', async () => {
    const app = await boot(adapter(), { trustInbound: false });
    apps.push(app);
    const res = await request(app.getHttpServer()).get('/ids').set('x-request-id', 'from-outside-1');
    const id = res.headers['x-request-id'] as string;
    expect(id).toMatch(DEFAULT_ID);
    expect(res.body).toEqual({ correlationId: id, observe: id });
  });

  it('an inbound id the validator accepts and Observe alone would refuse is used by both', async () => {
    const app = await boot(adapter(), { correlationId: { validate: (id) => /^[\w ]{1,64}$/.test(id) } });
    apps.push(app);
    const res = await request(app.getHttpServer()).get('/ids').set('x-request-id', 'order 42');
    expect(res.headers['x-request-id']).toBe('order 42');
    expect(res.body).toEqual({ correlationId: 'order 42', observe: 'order 42' });
  });

  it("JSON lines: Observe's traceId is the id, ours comes as ctx_traceId, no second correlationId", async () => {
    const app = await boot(adapter(), {});
    apps.push(app);
    const { result: res, lines } = await jsonLines(() => request(app.getHttpServer()).get('/ids').set('x-request-id', 'json-line-1'));
    expect(res.status).toBe(200);
    const line = lines.find((l) => l.message === 'ids');
    expect(line).toMatchObject({ context: 'IdsController', traceId: 'json-line-1' });
    expect(line?.ctx_traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(line?.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(line).not.toHaveProperty('correlationId');
  });
});
