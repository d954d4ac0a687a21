import 'reflect-metadata';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { IncomingMessage } from 'node:http';
import request from 'supertest';
import { ContextModule, ContextService, getOutboundHeaders, type ContextInit, type ContextModuleOptions } from '../src/index.js';
import { bootApp, platforms } from './utils/platforms.js';

class TenantContext {
  correlationId: string;
  tenant?: string;
  ['__proto__x']?: string;
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

@Controller()
class InspectController {
  constructor(private readonly context: ContextService<TenantContext>) {}
  @Get('inspect') inspect() {
    const trace = this.context.trace!;
    return {
      id: this.context.correlationId,
      traceId: trace.traceId,
      parentId: trace.parentId ?? null,
      remote: trace.remote,
      tracestate: trace.tracestate,
      baggage: this.context.baggage,
      tenant: this.context.get().tenant ?? null,
      outbound: getOutboundHeaders(),
    };
  }
}

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const INBOUND = {
  'x-request-id': 'in-id',
  traceparent: `00-${TRACE}-b7ad6b7169203331-01`,
  tracestate: 'congo=t61rcWkgMzE',
  baggage: 'tenant=acme,other=1',
};

describe.each(platforms)('trust policy per kind of inbound header (%s)', (_name, makeAdapter) => {
  const apps: INestApplication[] = [];
  async function inspect(options: ContextModuleOptions<TenantContext>, headers: Record<string, string> = INBOUND) {
    @Module({ imports: [ContextModule.forRoot(TenantContext, { baggage: { fields: ['tenant'] }, ...options })], controllers: [InspectController] })
    class TrustModule {}
    const app = await bootApp(TrustModule, makeAdapter);
    apps.push(app);
    const res = await request(app.getHttpServer()).get('/inspect').set(headers);
    expect(res.status).toBe(200);
    return res.body;
  }
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
  });

  it('default: everything inbound is honoured', async () => {
    const body = await inspect({});
    expect(body).toMatchObject({ id: 'in-id', traceId: TRACE, parentId: 'b7ad6b7169203331', remote: true, tenant: 'acme' });
    expect(body.tracestate).toEqual([['congo', 't61rcWkgMzE']]);
    expect(body.baggage).toEqual([
      { key: 'tenant', value: 'acme' },
      { key: 'other', value: '1' },
    ]);
  });

  it('trustInbound: false ignores all of it (and never rejects the request)', async () => {
    const body = await inspect({ trustInbound: false });
    expect(body.id).not.toBe('in-id');
    expect(body.traceId).not.toBe(TRACE);
    expect(body).toMatchObject({ parentId: null, remote: false, tracestate: [], baggage: [], tenant: null });
    expect(body.outbound.tracestate).toBeUndefined();
  });

  it('per-kind overrides: trust ids and trace but not baggage', async () => {
    const body = await inspect({ baggage: { fields: ['tenant'], trustInbound: false } });
    expect(body).toMatchObject({ id: 'in-id', traceId: TRACE, baggage: [], tenant: null });
  });

  it('a predicate decides per request (a shared secret header)', async () => {
    const internal = (req: IncomingMessage) => req.headers['x-mesh-secret'] === 'k8s';
    const outside = await inspect({ trustInbound: internal });
    expect(outside.traceId).not.toBe(TRACE);
    const inside = await inspect({ trustInbound: internal }, { ...INBOUND, 'x-mesh-secret': 'k8s' });
    expect(inside).toMatchObject({ id: 'in-id', traceId: TRACE, tenant: 'acme' });
  });

  it('object-polluting baggage keys are ordinary members and pollute nothing', async () => {
    const body = await inspect({}, { baggage: '__proto__=polluted,constructor=x,tenant=ok' });
    expect(body.tenant).toBe('ok');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('outbound headers carry a fresh parent id, the flags, tracestate, baggage and the id', async () => {
    const body = await inspect({});
    expect(body.outbound).toEqual({
      traceparent: expect.stringMatching(new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`)),
      tracestate: 'congo=t61rcWkgMzE',
      baggage: expect.stringContaining('tenant=acme'),
      'x-request-id': 'in-id',
    });
    expect(body.outbound.traceparent.split('-')[2]).not.toBe('b7ad6b7169203331');
  });
});

describe('propagation options are checked at bootstrap', () => {
  it.each([
    [{ baggage: { fields: ['__proto__'] } }, /baggage\.fields names an unusable context field/],
    [{ baggage: { fields: { tenant: 'bad key' } } }, /maps tenant to string "bad key", which is not a valid baggage key/],
    [{ baggage: { fields: 'tenant' } }, /baggage\.fields must be a list of field names or a map/],
    [{ baggage: { maxMembers: 0 } }, /baggage\.maxMembers must be a positive integer/],
    [{ trace: { maxTracestateLength: 'long' } }, /trace\.maxTracestateLength must be a positive integer/],
    [{ trace: 'on' }, /option trace must be an object/],
    [{ trace: { trustInbound: 1 } }, /option trace\.trustInbound must be true, false or a function/],
    [{ correlationId: { outboundHeader: 'bad header' } }, /correlationId\.outboundHeader must be an HTTP header name/],
  ])('%j', async (options, message) => {
    await expect(Test.createTestingModule({ imports: [ContextModule.forRoot(TenantContext, options as never)] }).compile()).rejects.toThrow(message);
  });
});
