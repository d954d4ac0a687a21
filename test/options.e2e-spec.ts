import 'reflect-metadata';
import { Controller, Get, Module, type INestApplication, type DynamicModule } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import request from 'supertest';
import { ContextModule, currentContext, type ContextModuleOptions } from '../src/index.js';
import { MyContext } from './fixtures/app-context.js';
import { bootApp, platforms } from './utils/platforms.js';

@Controller()
class IdController {
  @Get('id') id() {
    return { id: currentContext.correlationId };
  }
}

function moduleWith(options: ContextModuleOptions<MyContext>, contextModule?: DynamicModule) {
  @Module({ imports: [contextModule ?? ContextModule.forRoot(MyContext, options)], controllers: [IdController] })
  class OptionsModule {}
  return OptionsModule;
}

describe.each(platforms)('correlation id options (%s)', (_name, makeAdapter) => {
  const apps: INestApplication[] = [];
  async function boot(options: ContextModuleOptions<MyContext>) {
    const app = await bootApp(moduleWith(options), makeAdapter);
    apps.push(app);
    return request(app.getHttpServer());
  }
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
  });

  it('defaults: x-request-id first, then x-correlation-id; echoed in x-request-id', async () => {
    const http = await boot({});
    let res = await http.get('/id').set('x-correlation-id', 'from-corr');
    expect(res.body.id).toBe('from-corr');
    expect(res.headers['x-request-id']).toBe('from-corr');
    res = await http.get('/id').set('x-correlation-id', 'from-corr').set('x-request-id', 'from-req');
    expect(res.body.id).toBe('from-req');
  });

  it.each([
    ['too long', 'a'.repeat(129)],
    ['CR/LF injection', 'abc\r\nset-cookie: x=1'.replace(/\r\n/, ' ')],
    ['spaces', 'has space'],
    ['quotes and angle brackets', '"<script>"'],
    ['unicode', 'idé'],
  ])('an invalid inbound id (%s) is replaced by a fresh one and never echoed', async (_label, bad) => {
    const http = await boot({});
    const res = await http.get('/id').set('x-request-id', bad);
    expect(res.body.id).not.toBe(bad);
    expect(res.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers['x-request-id']).toBe(res.body.id);
    expect(JSON.stringify(res.headers)).not.toContain(bad);
  });

  it('an invalid first header falls through to a valid later one', async () => {
    const http = await boot({});
    const res = await http.get('/id').set('x-request-id', 'bad value').set('x-correlation-id', 'good-1');
    expect(res.body.id).toBe('good-1');
  });

  it('128 characters of the allowed alphabet are accepted', async () => {
    const http = await boot({});
    const id = 'Az09._:-'.repeat(16);
    expect((await http.get('/id').set('x-request-id', id)).body.id).toBe(id);
  });

  it('custom request headers, response header, validator and generator', async () => {
    let n = 0;
    const http = await boot({
      correlationId: {
        requestHeaders: ['X-Trace-Token'],
        responseHeader: 'X-Echo-Id',
        validate: (id) => id.startsWith('ok-'),
        generate: () => (++n === 2 ? 'rejected-by-validate' : `ok-gen-${n}`),
      },
    });
    let res = await http.get('/id').set('x-trace-token', 'ok-7').set('x-request-id', 'ignored');
    expect(res.body.id).toBe('ok-7');
    expect(res.headers['x-echo-id']).toBe('ok-7');
    expect(res.headers['x-request-id']).toBeUndefined();
    res = await http.get('/id').set('x-trace-token', 'nope');
    expect(res.body.id).toBe('ok-gen-1');
    expect(res.headers['x-echo-id']).toBe('ok-gen-1');
    // A generated id must pass the validator too (the next service applies the same rule): the default id replaces it.
    res = await http.get('/id');
    expect(res.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers['x-echo-id']).toBe(res.body.id);
  });

  it('responseHeader: false sends no header', async () => {
    const http = await boot({ correlationId: { responseHeader: false } });
    const res = await http.get('/id').set('x-request-id', 'quiet');
    expect(res.body.id).toBe('quiet');
    expect(res.headers['x-request-id']).toBeUndefined();
  });

  it('trustInbound: false always generates (an internet-facing edge)', async () => {
    const http = await boot({ trustInbound: false });
    const res = await http.get('/id').set('x-request-id', 'outside-1');
    expect(res.body.id).not.toBe('outside-1');
    expect(res.headers['x-request-id']).toBe(res.body.id);
  });

  it('trustInbound as a predicate over the request', async () => {
    const http = await boot({ trustInbound: (req: IncomingMessage) => req.headers['x-internal-secret'] === 's3cret' });
    expect((await http.get('/id').set('x-request-id', 'in-1').set('x-internal-secret', 's3cret')).body.id).toBe('in-1');
    expect((await http.get('/id').set('x-request-id', 'in-2')).body.id).not.toBe('in-2');
  });

  it('a generator that returns garbage gets the request a 500 with a default UUID (see test/hardening)', async () => {
    const http = await boot({ correlationId: { generate: () => null as unknown as string } });
    const res = await http.get('/id');
    expect(res.status).toBe(500);
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('a factory option builds the context, and the id field is filled when left undefined', async () => {
    class Plain {
      correlationId?: string;
      tenant?: string;
    }
    @Controller()
    class TenantController {
      @Get('tenant') tenant() {
        const ctx = currentContext as unknown as Plain;
        return { id: ctx.correlationId, tenant: ctx.tenant, isPlain: ctx instanceof Plain };
      }
    }
    @Module({
      imports: [
        ContextModule.forRoot(Plain, {
          factory: ({ request }) => Object.assign(new Plain(), { tenant: request?.headers['x-tenant'] as string }),
        }),
      ],
      controllers: [TenantController],
    })
    class TenantModule {}
    const app = await bootApp(TenantModule, makeAdapter);
    apps.push(app);
    const res = await request(app.getHttpServer()).get('/tenant').set('x-request-id', 't-1').set('x-tenant', 'acme');
    expect(res.body).toEqual({ id: 't-1', tenant: 'acme', isPlain: true });
  });

  it('correlationIdField: false leaves the user object alone', async () => {
    class Untouched {
      correlationId?: string;
    }
    @Controller()
    class UntouchedController {
      @Get('untouched') get() {
        return { has: (currentContext as unknown as Untouched).correlationId ?? null };
      }
    }
    @Module({ imports: [ContextModule.forRoot(Untouched, { correlationIdField: false })], controllers: [UntouchedController] })
    class UntouchedModule {}
    const app = await bootApp(UntouchedModule, makeAdapter);
    apps.push(app);
    expect((await request(app.getHttpServer()).get('/untouched')).body).toEqual({ has: null });
  });
});
