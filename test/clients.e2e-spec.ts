import 'reflect-metadata';
import type { IncomingMessage } from 'node:http';
import {
  BadRequestException,
  Catch,
  Controller,
  ForbiddenException,
  Get,
  HttpException,
  Injectable,
  Module,
  UseGuards,
  type ArgumentsHost,
  type CanActivate,
  type ExceptionFilter,
  type INestApplication,
  type LoggerService,
} from '@nestjs/common';
import { APP_FILTER, HttpAdapterHost } from '@nestjs/core';
import request from 'supertest';
import { ContextModule, ContextService, currentContext, type ContextModuleOptions, type GenerateInput } from '../src/index.js';
import { ContextHost } from '../src/runtime/context-host.js';
import { MyContext } from './fixtures/app-context.js';
import { bootApp, platforms } from './utils/platforms.js';
import { DEFAULT_ID } from './utils/ids.js';

/**
 * Issue #17, "ids for clients": the id exposed to browser code through CORS, in the body of error
 * responses, and derived from the request by `generate`. Real apps on Express and Fastify, real CORS
 * set-ups (`app.enableCors()`: `cors` on Express, `@fastify/cors` on Fastify) and real preflights.
 */

/** Keeps what the library warns about through Nest's logger. */
class WarnLogger implements LoggerService {
  readonly warnings: string[] = [];
  log(): void {}
  error(): void {}
  debug(): void {}
  verbose(): void {}
  warn(message: unknown): void {
    this.warnings.push(String(message));
  }
}

@Injectable()
class DenyGuard implements CanActivate {
  canActivate(): boolean {
    throw new ForbiddenException('no entry');
  }
}

@Controller()
class ClientController {
  @Get('id') id() {
    return { id: currentContext.correlationId };
  }
  @Get('bad-request') badRequest() {
    throw new BadRequestException('item is required');
  }
  @Get('crash') crash() {
    throw new Error('secret internal detail');
  }
  @Get('own-field') ownField() {
    throw new HttpException({ statusCode: 409, message: 'taken', correlationId: 'set-by-handler' }, 409);
  }
  @Get('string-error') stringError() {
    throw new HttpException('plain string', 418);
  }
  @Get('denied') @UseGuards(DenyGuard) denied() {
    return 'never';
  }
}

function moduleWith(options: ContextModuleOptions<MyContext> & { interceptor?: boolean }, providers: unknown[] = []) {
  @Module({ imports: [ContextModule.forRoot(MyContext, options)], controllers: [ClientController], providers: providers as never[] })
  class ClientModule {}
  return ClientModule;
}

/** The names of an `Access-Control-Expose-Headers` value, lower-cased, in order. */
function exposed(value: string | undefined): string[] {
  return (value ?? '').split(',').map((n) => n.trim().toLowerCase()).filter((n) => n !== '');
}

const ORIGIN = 'http://web.example';
const UUID = DEFAULT_ID;

describe.each(platforms)('ids for clients (%s)', (_name, makeAdapter) => {
  const apps: INestApplication[] = [];
  const logger = new WarnLogger();
  async function boot(options: ContextModuleOptions<MyContext> & { interceptor?: boolean }, configure?: (app: INestApplication) => void, providers?: unknown[]) {
    const app = await bootApp(moduleWith(options, providers), makeAdapter, (a) => {
      a.useLogger(logger);
      configure?.(a);
    });
    apps.push(app);
    return { app, http: request(app.getHttpServer()) };
  }
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
    logger.warnings.length = 0;
  });

  describe('correlationId.exposeHeader', () => {
    it('merges the id header into the exposed headers the CORS set-up writes, keeping them, without duplicates', async () => {
      const { http } = await boot({ correlationId: { exposeHeader: true } }, (app) =>
        app.enableCors({ origin: ORIGIN, exposedHeaders: ['X-Total-Count', 'X-Request-Id'] }),
      );
      const res = await http.get('/id').set('origin', ORIGIN).set('x-request-id', 'browser-1').expect(200);
      expect(res.headers['access-control-allow-origin']).toBe(ORIGIN);
      expect(exposed(res.headers['access-control-expose-headers'])).toEqual(['x-total-count', 'x-request-id']);
      expect(res.headers['x-request-id']).toBe('browser-1');
    });

    it('adds it to a CORS set-up that exposes nothing', async () => {
      const { http } = await boot({ correlationId: { exposeHeader: true } }, (app) => app.enableCors({ origin: ORIGIN }));
      const res = await http.get('/id').set('origin', ORIGIN).expect(200);
      expect(res.headers['access-control-allow-origin']).toBe(ORIGIN);
      expect(exposed(res.headers['access-control-expose-headers'])).toEqual(['x-request-id']);
    });

    it('a preflight for a request that sends x-request-id passes, and the request that follows reads its id', async () => {
      const { http } = await boot({ correlationId: { exposeHeader: true } }, (app) =>
        app.enableCors({ origin: ORIGIN, exposedHeaders: 'x-total-count' }),
      );
      const preflight = await http
        .options('/id')
        .set('origin', ORIGIN)
        .set('access-control-request-method', 'GET')
        .set('access-control-request-headers', 'x-request-id');
      expect(preflight.status).toBe(204);
      expect(preflight.headers['access-control-allow-origin']).toBe(ORIGIN);
      expect(exposed(preflight.headers['access-control-allow-headers'])).toContain('x-request-id');
      expect(exposed(preflight.headers['access-control-expose-headers'])).toEqual(['x-total-count', 'x-request-id']);

      const res = await http.get('/id').set('origin', ORIGIN).set('x-request-id', 'after-preflight').expect(200);
      expect(res.body.id).toBe('after-preflight');
      expect(exposed(res.headers['access-control-expose-headers'])).toEqual(['x-total-count', 'x-request-id']);
    });

    it('exposes a custom response header, on error responses too', async () => {
      const { http } = await boot({ correlationId: { exposeHeader: true, responseHeader: 'X-Correlation-Id' } }, (app) =>
        app.enableCors({ origin: ORIGIN, exposedHeaders: ['x-correlation-id'] }),
      );
      const res = await http.get('/bad-request').set('origin', ORIGIN).expect(400);
      expect(exposed(res.headers['access-control-expose-headers'])).toEqual(['x-correlation-id']);
      expect(res.headers['x-correlation-id']).toMatch(UUID);
      const missing = await http.get('/no-such-route').set('origin', ORIGIN).expect(404);
      expect(exposed(missing.headers['access-control-expose-headers'])).toEqual(['x-correlation-id']);
    });

    it('off by default: the CORS set-up is left as it is', async () => {
      const { http } = await boot({}, (app) => app.enableCors({ origin: ORIGIN, exposedHeaders: ['x-total-count'] }));
      const res = await http.get('/id').set('origin', ORIGIN).expect(200);
      expect(exposed(res.headers['access-control-expose-headers'])).toEqual(['x-total-count']);
    });

    it('without responseHeader it fails at bootstrap, saying why', async () => {
      await expect(boot({ correlationId: { exposeHeader: true, responseHeader: false } })).rejects.toThrow(
        /exposeHeader is true but correlationId.responseHeader is false/,
      );
    });
  });

  describe('correlationId.errorBody', () => {
    it("adds the id to the default exception filter's body: HTTP exceptions, guards, unknown routes, unknown errors", async () => {
      const { http } = await boot({ correlationId: { errorBody: true } });
      const bad = await http.get('/bad-request').set('x-request-id', 'err-1').expect(400);
      expect(bad.body).toEqual({ statusCode: 400, message: 'item is required', error: 'Bad Request', correlationId: 'err-1' });
      const denied = await http.get('/denied').set('x-request-id', 'err-2').expect(403);
      expect(denied.body).toEqual({ statusCode: 403, message: 'no entry', error: 'Forbidden', correlationId: 'err-2' });
      const missing = await http.get('/no-such-route').set('x-request-id', 'err-3').expect(404);
      expect(missing.body).toMatchObject({ statusCode: 404, correlationId: 'err-3' });
      const crash = await http.get('/crash').expect(500);
      expect(crash.body).toEqual({ statusCode: 500, message: 'Internal server error', correlationId: crash.headers['x-request-id'] });
      const teapot = await http.get('/string-error').set('x-request-id', 'err-4').expect(418);
      expect(teapot.body).toEqual({ statusCode: 418, message: 'plain string', correlationId: 'err-4' });
    });

    it('a field name of your own; a body that has the field keeps it; success bodies are left alone', async () => {
      const { http } = await boot({ correlationId: { errorBody: 'requestId' } });
      const bad = await http.get('/bad-request').set('x-request-id', 'err-5').expect(400);
      expect(bad.body.requestId).toBe('err-5');
      expect(bad.body.correlationId).toBeUndefined();
      const { http: other } = await boot({ correlationId: { errorBody: true } });
      expect((await other.get('/own-field').set('x-request-id', 'err-6').expect(409)).body.correlationId).toBe('set-by-handler');
      expect((await other.get('/id').set('x-request-id', 'ok-1').expect(200)).body).toEqual({ id: 'ok-1' });
    });

    it('off by default', async () => {
      const { http } = await boot({});
      expect((await http.get('/bad-request').expect(400)).body).toEqual({ statusCode: 400, message: 'item is required', error: 'Bad Request' });
    });

    it('with enterEarly: false, an error thrown in a handler still gets the id (the interceptor entered it)', async () => {
      const { http } = await boot({ enterEarly: false, correlationId: { errorBody: true } });
      expect((await http.get('/bad-request').set('x-request-id', 'late-1').expect(400)).body.correlationId).toBe('late-1');
    });

    it("the adapter's reply is put back when the app closes", async () => {
      const { app } = await boot({ correlationId: { errorBody: true } });
      const adapter = app.getHttpAdapter() as unknown as Record<string, unknown>;
      expect(Object.prototype.hasOwnProperty.call(adapter, 'reply')).toBe(true);
      await app.close();
      expect(Object.prototype.hasOwnProperty.call(adapter, 'reply')).toBe(false);
    });

    it('a filter of your own adds it with ContextService.withCorrelationId(body, host)', async () => {
      @Catch()
      class OwnFilter implements ExceptionFilter {
        constructor(private readonly adapterHost: HttpAdapterHost) {}
        catch(exception: unknown, host: ArgumentsHost) {
          const status = exception instanceof HttpException ? exception.getStatus() : 500;
          const body = ContextService.withCorrelationId({ status, title: 'It went wrong' }, host);
          this.adapterHost.httpAdapter.reply(host.switchToHttp().getResponse(), body, status);
        }
      }
      for (const options of [{}, { enterEarly: false }] as ContextModuleOptions<MyContext>[]) {
        const { http } = await boot(options, undefined, [{ provide: APP_FILTER, useClass: OwnFilter }]);
        const res = await http.get('/bad-request').set('x-request-id', 'own-1').expect(400);
        expect(res.body).toEqual({ status: 400, title: 'It went wrong', correlationId: 'own-1' });
      }
      // Outside any context the body is returned as it is.
      const body = { status: 500 };
      expect(ContextService.withCorrelationId(body)).toBe(body);
    });

    it('a field name that cannot be one fails at bootstrap', async () => {
      await expect(boot({ correlationId: { errorBody: '__proto__' } })).rejects.toThrow(/errorBody must be true, false or a field name/);
    });
  });

  describe('correlationId.generate receives the request', () => {
    const fromGateway = ({ request }: GenerateInput) => {
      const value = request?.headers['x-gateway-request-id'];
      return typeof value === 'string' ? `gw-${value}` : undefined;
    };

    it('derives the id from the request (here an API gateway header, with inbound ids untrusted)', async () => {
      const { http } = await boot({ trustInbound: false, correlationId: { generate: fromGateway } });
      const res = await http.get('/id').set('x-gateway-request-id', 'abc123').set('x-request-id', 'ignored').expect(200);
      expect(res.body.id).toBe('gw-abc123');
      expect(res.headers['x-request-id']).toBe('gw-abc123');
      // undefined: the default id.
      const plain = await http.get('/id').expect(200);
      expect(plain.body.id).toMatch(UUID);
      expect(logger.warnings).toEqual([]);
    });

    it('a derived id that fails validation gets the default id, warned once per app', async () => {
      const { http } = await boot({ correlationId: { generate: fromGateway } });
      const first = await http.get('/id').set('x-gateway-request-id', 'has space').expect(200);
      const second = await http.get('/id').set('x-gateway-request-id', 'x'.repeat(200)).expect(200);
      for (const res of [first, second]) {
        expect(res.body.id).toMatch(UUID);
        expect(res.headers['x-request-id']).toBe(res.body.id);
      }
      expect(logger.warnings).toHaveLength(1);
      expect(logger.warnings[0]).toMatch(/correlationId.generate returned string "gw-has space", which this app's correlationId.validate rejects/);
      expect(logger.warnings[0]).toMatch(/Make generate return ids that validate accepts/);
    });

    it('gets the source and metadata elsewhere: run() passes { source: "manual" }', async () => {
      const seen: GenerateInput[] = [];
      const { app } = await boot({ correlationId: { generate: (input) => (seen.push(input), `made-${seen.length}`) } });
      const id = app.get(ContextService).run(() => currentContext.correlationId);
      expect(id).toBe('made-1');
      expect(seen).toEqual([{ source: 'manual' }]);
      const res = await request(app.getHttpServer()).get('/id').expect(200);
      expect(res.body.id).toBe('made-2');
      expect(seen[1]?.source).toBe('http');
      expect((seen[1]?.request as IncomingMessage).url).toBe('/id');
      expect(seen[1]?.headers).toBe((seen[1]?.request as IncomingMessage).headers);
    });

    it('messages: it gets the source and the message metadata', async () => {
      const seen: GenerateInput[] = [];
      const { app } = await boot({ correlationId: { generate: (input) => (seen.push(input), undefined) } });
      const metadata = { 'x-gateway-request-id': 'm-1' };
      const record = app.get(ContextHost).fromCarrier(metadata, 'rpc');
      expect(record.correlationId).toMatch(UUID);
      expect(seen).toEqual([{ source: 'rpc', headers: metadata }]);
    });

    it('a generator without a parameter still works', async () => {
      let n = 0;
      const { http } = await boot({ correlationId: { generate: () => `plain-${++n}` } });
      expect((await http.get('/id').expect(200)).body.id).toBe('plain-1');
    });
  });
});
