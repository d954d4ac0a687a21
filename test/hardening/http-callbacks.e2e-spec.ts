import 'reflect-metadata';
import { request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  Catch,
  Controller,
  Get,
  Injectable,
  Module,
  type ArgumentsHost,
  type ExceptionFilter,
  type INestApplication,
  type LoggerService,
} from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import request from 'supertest';
import { ContextModule, ContextService, currentContext, type ContextModuleOptions } from '../../src/index.js';
import { MyContext } from '../fixtures/app-context.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { DEFAULT_ID } from '../utils/ids.js';

/** Captures what the library reports through Nest's logger. */
class CaptureLogger implements LoggerService {
  readonly errors: { message: string; stack: string }[] = [];
  log(): void {}
  warn(): void {}
  debug(): void {}
  verbose(): void {}
  error(message: unknown, ...rest: unknown[]): void {
    this.errors.push({ message: String(message), stack: rest.map(String).join('\n') });
  }
}

@Controller()
class IdController {
  @Get('id') id() {
    return { id: currentContext.correlationId };
  }
}

function moduleWith(options: ContextModuleOptions<MyContext>, interceptor: boolean) {
  @Module({ imports: [ContextModule.forRoot(MyContext, { ...options, interceptor })], controllers: [IdController] })
  class CallbackModule {}
  return CallbackModule;
}

const UUID = DEFAULT_ID;

/** The four reproductions of issue #12: each killed the process with one request. */
const reproductions: [label: string, options: ContextModuleOptions<MyContext>, headers: Record<string, string>, cause: RegExp][] = [
  [
    'trustInbound throws (TypeError on a missing header)',
    { trustInbound: (req: IncomingMessage) => (req.headers['x-mesh-secret'] as string).startsWith('s3cret') },
    { 'x-request-id': 'from-mesh' },
    /TypeError/,
  ],
  [
    'validate throws (URIError on "%")',
    { correlationId: { validate: (id: string) => /^[\w-]{1,64}$/.test(decodeURIComponent(id)) } },
    { 'x-request-id': '%' },
    /URIError/,
  ],
  ['generate throws', { correlationId: { generate: () => { throw new Error('id service down'); } } }, {}, /id service down/],
  ['generate returns something that is not a string', { correlationId: { generate: () => 42 as unknown as string } }, {}, /cannot be a correlation id/],
];

describe.each(platforms)('a user callback that fails never takes the process down (%s)', (_name, makeAdapter) => {
  const apps: INestApplication[] = [];
  const logger = new CaptureLogger();
  async function boot(options: ContextModuleOptions<MyContext>, interceptor: boolean) {
    const app = await bootApp(moduleWith(options, interceptor), makeAdapter, (a) => a.useLogger(logger));
    apps.push(app);
    return request(app.getHttpServer());
  }
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
    logger.errors.length = 0;
  });

  describe.each([
    ['with the interceptor (Nest exception layer)', true],
    ['without the interceptor (the entry answers)', false],
  ])('%s', (_mode, interceptor) => {
    it.each(reproductions)('%s: 500 with a valid id header, logged once with its stack, next request served', async (_l, options, headers, cause) => {
      const http = await boot(options, interceptor);
      const failed = await http.get('/id').set(headers);
      expect(failed.status).toBe(500);
      expect(failed.body).toMatchObject({ statusCode: 500 });
      expect(failed.headers['x-request-id']).toMatch(UUID);
      expect(JSON.stringify(failed.body)).not.toMatch(cause); // nothing of the failure leaks to the client
      expect(logger.errors).toHaveLength(1);
      expect(logger.errors[0]?.message).toMatch(/ContextModule: your .* callback/);
      expect(logger.errors[0]?.stack).toMatch(cause);
      expect(logger.errors[0]?.stack).toMatch(/\n\s+at /);

      // The process keeps serving: a request that does not hit the failing path answers normally.
      const next = await http.get('/id').set('x-request-id', 'next-1').set('x-mesh-secret', 's3cret-ok');
      expect(next.status).toBe(200);
      expect(next.body.id).toBe('next-1');
      expect(next.headers['x-request-id']).toBe('next-1');
    });
  });

  it('a thrown value whose every getter throws (stack, message, name) still gives a 500, never a crash', async () => {
    const hostile = new Proxy(new Error('bad'), {
      get(target, key) {
        if (key === 'stack' || key === 'message' || key === 'name') throw new Error(`no ${String(key)}`);
        return Reflect.get(target, key) as unknown;
      },
    });
    const http = await boot({ correlationId: { validate: () => { throw hostile; } } }, true);
    const res = await http.get('/id').set('x-request-id', 'abc');
    expect(res.status).toBe(500);
    expect(res.headers['x-request-id']).toMatch(UUID);
    expect(logger.errors).toHaveLength(1);
    expect((await http.get('/id')).status).toBe(200); // still serving (no inbound id: the validator is not asked)
  });

  it('a generator that returns garbage answers 500 with a default id, and says so', async () => {
    const http = await boot({ correlationId: { generate: () => ({ id: 1 }) as unknown as string } }, true);
    const res = await http.get('/id');
    expect(res.status).toBe(500);
    expect(res.headers['x-request-id']).toMatch(UUID);
    expect(logger.errors[0]?.message).toMatch(/correlationId.generate callback returned an object/);
  });

  it.each([
    ['empty', ''],
    ['not sendable as a header', 'id\n1'],
  ])('a generator that returns an unusable string (%s) gives the request a default id, no 500 (it may come from inbound data)', async (_label, id) => {
    const http = await boot({ correlationId: { generate: () => id } }, true);
    const res = await http.get('/id');
    expect(res.status).toBe(200);
    expect(res.body.id).toMatch(UUID);
    expect(res.headers['x-request-id']).toBe(res.body.id);
    expect(logger.errors).toEqual([]);
  });

  it('a validator returning something other than true rejects the id (a promise is not true)', async () => {
    const http = await boot({ correlationId: { validate: (async () => true) as unknown as (id: string) => boolean } }, true);
    const res = await http.get('/id').set('x-request-id', 'any-id');
    expect(res.status).toBe(200);
    expect(res.body.id).toMatch(UUID);
  });

  it('many failing requests in flight: all answer, the process stays up', async () => {
    const http = await boot({ correlationId: { generate: () => { throw new Error('down'); } } }, true);
    const results = await Promise.all(Array.from({ length: 50 }, () => http.get('/id')));
    expect(results.every((r) => r.status === 500 && UUID.test(r.headers['x-request-id'] as string))).toBe(true);
    expect(new Set(results.map((r) => r.headers['x-request-id'])).size).toBe(50);
    expect(logger.errors).toHaveLength(50);
  });
});

describe.each(platforms)('repeated id headers: the first valid value wins (%s)', (_name, makeAdapter) => {
  let app: INestApplication;
  beforeAll(async () => {
    app = await bootApp(moduleWith({}, true), makeAdapter);
  });
  afterAll(() => app.close());

  it.each([
    [['first-1', 'second-2'], 'first-1'],
    [['bad value', 'second-2'], 'second-2'],
    [['bad value', 'also bad'], undefined],
  ])('x-request-id sent as %j → %s', async (values, expected) => {
    const res = await rawGet(app.getHttpServer(), '/id', { 'x-request-id': values });
    if (expected === undefined) expect(res.id).toMatch(UUID);
    else expect(res.id).toBe(expected);
    expect(res.header).toBe(res.id);
  });

  it('a joined value never gets echoed raw', async () => {
    const res = await rawGet(app.getHttpServer(), '/id', { 'x-request-id': ['a,b', 'c'] });
    expect(res.id).toBe('a');
  });
});

describe.each(platforms)('getOrUndefined() after a failed construction (%s)', (_name, makeAdapter) => {
  class Exploding {
    constructor() {
      throw new Error('database of tenants unreachable');
    }
  }

  @Injectable()
  @Catch()
  class ReportingFilter implements ExceptionFilter {
    constructor(private readonly context: ContextService<Exploding>) {}
    catch(_error: unknown, host: ArgumentsHost): void {
      const reply = host.switchToHttp().getResponse<{ raw?: unknown }>();
      const body = JSON.stringify({ context: this.context.getOrUndefined() ?? null, id: this.context.correlationId });
      const raw = (reply.raw ?? reply) as { statusCode: number; setHeader(n: string, v: string): void; end(b: string): void };
      raw.statusCode = 500;
      raw.setHeader('content-type', 'application/json');
      raw.end(body);
    }
  }

  @Controller()
  class ReadingController {
    @Get('read') read() {
      return { ctx: currentContext };
    }
  }

  @Module({
    imports: [ContextModule.forRoot(Exploding)],
    controllers: [ReadingController],
    providers: [{ provide: APP_FILTER, useClass: ReportingFilter }],
  })
  class ExplodingModule {}

  it('returns undefined in the exception filter, where the correlation id is still readable', async () => {
    const app = await bootApp(ExplodingModule, makeAdapter);
    try {
      const res = await request(app.getHttpServer()).get('/read').set('x-request-id', 'exploded-1');
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ context: null, id: 'exploded-1' });
      expect(res.headers['x-request-id']).toBe('exploded-1');
    } finally {
      await app.close();
    }
  });
});

/** A GET with raw header values (arrays become repeated header lines), through the app's own server. */
async function rawGet(
  server: Server,
  path: string,
  headers: Record<string, string | string[]>,
): Promise<{ status: number; id: string; header: string | undefined }> {
  if (!server.listening) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const parsed = JSON.parse(body) as { id: string };
        resolve({ status: res.statusCode ?? 0, id: parsed.id, header: res.headers['x-request-id'] as string | undefined });
      });
    });
    req.on('error', reject);
    req.end();
  });
}
