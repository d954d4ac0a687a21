import 'reflect-metadata';
import { CanActivate, Controller, ExecutionContext, Get, Headers, Injectable, Module, UseGuards, type INestApplication } from '@nestjs/common';
import { HttpService } from '@nestjs/axios';
import axios from 'axios';
import { firstValueFrom } from 'rxjs';
import { ContextModule, ContextService, getOutboundHeaders, type ContextInit } from '../src/index.js';
import { propagateContext } from '../src/integrations/axios/index.js';
import { ContextRecord, storage } from '../src/record/context-record.js';
import { resolveOptions } from '../src/runtime/options.js';
import { propagateGlobalFetch, propagateContext as propagateFetch } from '../src/integrations/fetch/index.js';
import { ContextHttpModule } from '../src/integrations/nestjs-axios/index.js';
import { bootApp, platforms } from './utils/platforms.js';

class ChainContext {
  correlationId: string;
  userId?: string;
  tenant?: string;
  secret = 'never-leaves';
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

/** What service B saw of one call. */
interface Seen {
  headers: Record<string, string | undefined>;
  correlationId: string | undefined;
  traceId: string | undefined;
  parentId: string | undefined;
  spanId: string | undefined;
  tenant: string | undefined;
  baggage: { key: string; value: string }[];
}

@Controller()
class ServiceBController {
  constructor(private readonly context: ContextService<ChainContext>) {}
  @Get('echo')
  echo(@Headers() headers: Record<string, string>): Seen {
    const trace = this.context.trace!;
    return {
      headers: { traceparent: headers.traceparent, tracestate: headers.tracestate, baggage: headers.baggage, 'x-request-id': headers['x-request-id'] },
      correlationId: this.context.correlationId,
      traceId: trace.traceId,
      parentId: trace.parentId,
      spanId: trace.spanId,
      tenant: this.context.get().tenant,
      baggage: this.context.baggage.map(({ key, value }) => ({ key, value })),
    };
  }
}

@Module({
  imports: [ContextModule.forRoot(ChainContext, { baggage: { fields: ['tenant'] } })],
  controllers: [ServiceBController],
})
class ServiceBModule {}

const target = { url: '' };

@Injectable()
class UserGuard implements CanActivate {
  constructor(private readonly context: ContextService<ChainContext>) {}
  canActivate(ctx: ExecutionContext): boolean {
    const ctxObj = this.context.get();
    ctxObj.userId = ctx.switchToHttp().getRequest<{ headers: Record<string, string> }>().headers['x-user'];
    return true;
  }
}

const plainAxios = propagateContext(axios.create());

@Controller('via')
@UseGuards(UserGuard)
class ServiceAController {
  constructor(
    private readonly http: HttpService,
    private readonly context: ContextService<ChainContext>,
  ) {}

  private async twice(call: () => Promise<Seen>) {
    const first = await call();
    const second = await call();
    return { a: { ...this.context.trace!, correlationId: this.context.correlationId }, calls: [first, second] };
  }

  @Get('http-service')
  viaHttpService() {
    return this.twice(async () => (await firstValueFrom(this.http.get<Seen>(`${target.url}/echo`))).data);
  }

  @Get('axios')
  viaAxios() {
    return this.twice(async () => (await plainAxios.get<Seen>(`${target.url}/echo`)).data);
  }

  @Get('fetch')
  viaFetch() {
    return this.twice(async () => (await (await fetch(`${target.url}/echo`)).json()) as Seen);
  }
}

@Module({
  imports: [ContextModule.forRoot(ChainContext, { baggage: { fields: { userId: 'user.id', tenant: 'tenant' } } }), ContextHttpModule.register()],
  controllers: [ServiceAController],
  providers: [UserGuard],
})
class ServiceAModule {}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

describe.each(platforms)('two services: A calls B over HTTP, the context travels (%s)', (_name, makeAdapter) => {
  let a: INestApplication;
  let b: INestApplication;
  let aUrl: string;
  let uninstallFetch: () => void;

  beforeAll(async () => {
    uninstallFetch = propagateGlobalFetch();
    b = await bootApp(ServiceBModule, makeAdapter);
    await b.listen(0, '127.0.0.1');
    target.url = (await b.getUrl()).replace('[::1]', '127.0.0.1');
    a = await bootApp(ServiceAModule, makeAdapter);
    await a.listen(0, '127.0.0.1');
    aUrl = (await a.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    uninstallFetch();
    await a.close();
    await b.close();
  });

  async function callA(client: string, headers: Record<string, string>) {
    const res = await fetch(`${aUrl}/via/${client}`, { headers });
    expect(res.status).toBe(200);
    return (await res.json()) as { a: { traceId: string; spanId: string; parentId?: string; correlationId: string }; calls: Seen[] };
  }

  it.each(['http-service', 'axios', 'fetch'])('through %s: same trace and correlation id, a new parent id per call, declared baggage', async (client) => {
    const { a: seenByA, calls } = await callA(client, {
      traceparent: `00-${TRACE}-${PARENT}-01`,
      tracestate: 'vendor=abc,other=xyz',
      baggage: 'inbound.key=kept%20value,tenant=acme',
      'x-request-id': `chain-${client}`,
      'x-user': 'u-7',
    });
    expect(seenByA.traceId).toBe(TRACE);
    expect(seenByA.parentId).toBe(PARENT);
    expect(seenByA.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(seenByA.spanId).not.toBe(PARENT);
    for (const seen of calls) {
      expect(seen.traceId).toBe(TRACE);
      expect(seen.correlationId).toBe(`chain-${client}`);
      expect(seen.headers['x-request-id']).toBe(`chain-${client}`);
      expect(seen.headers.traceparent).toMatch(new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
      expect(seen.parentId).toBe(seen.headers.traceparent!.split('-')[2]);
      expect(seen.parentId).not.toBe(PARENT);
      expect(seen.headers.tracestate).toBe('vendor=abc,other=xyz');
      expect(seen.baggage).toEqual(
        expect.arrayContaining([
          { key: 'user.id', value: 'u-7' },
          { key: 'tenant', value: 'acme' },
          { key: 'inbound.key', value: 'kept value' },
        ]),
      );
      expect(seen.tenant).toBe('acme');
      expect(JSON.stringify(seen.headers)).not.toContain('never-leaves');
    }
    expect(calls[0]!.parentId).not.toBe(calls[1]!.parentId);
  });

  it('without an inbound trace, A starts one and B continues it', async () => {
    const { a: seenByA, calls } = await callA('fetch', {});
    expect(seenByA.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(seenByA.parentId).toBeUndefined();
    for (const seen of calls) {
      expect(seen.traceId).toBe(seenByA.traceId);
      expect(seen.correlationId).toBe(seenByA.correlationId);
      expect(seen.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[02]$/);
      expect(seen.headers.tracestate).toBeUndefined();
    }
  });

  it('an invalid inbound traceparent starts a new trace and its tracestate is ignored', async () => {
    const { a: seenByA, calls } = await callA('axios', { traceparent: `00-${TRACE.toUpperCase()}-${PARENT}-01`, tracestate: 'vendor=abc' });
    expect(seenByA.traceId).not.toBe(TRACE.toUpperCase());
    expect(seenByA.traceId).not.toBe(TRACE);
    expect(calls[0]!.headers.tracestate).toBeUndefined();
  });

  it('a call made outside any context carries no context headers and does not throw', async () => {
    const seen = (await (await fetch(`${target.url}/echo`)).json()) as Seen;
    expect(seen.headers.traceparent).toBeUndefined();
    expect(seen.headers.baggage).toBeUndefined();
    expect(getOutboundHeaders()).toEqual({});
    expect(getOutboundHeaders({ newTraceOutsideContext: true }).traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-02$/);
    const viaAxios = (await plainAxios.get<Seen>(`${target.url}/echo`)).data;
    expect(viaAxios.headers.traceparent).toBeUndefined();
  });

  it('100 concurrent requests through A never mix headers', async () => {
    const runs = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const trace = (i + 1).toString(16).padStart(32, 'a');
        const client = ['http-service', 'axios', 'fetch'][i % 3]!;
        const { calls } = await callA(client, { traceparent: `00-${trace}-${PARENT}-00`, 'x-request-id': `c-${i}`, 'x-user': `user-${i}` });
        return calls.every(
          (c) => c.traceId === trace && c.correlationId === `c-${i}` && c.baggage.some((m) => m.key === 'user.id' && m.value === `user-${i}`),
        );
      }),
    );
    expect(runs.filter((ok) => !ok)).toEqual([]);
  });
});

describe('fetch: propagateGlobalFetch and propagateContext', () => {
  class FetchContext {}
  const record = new ContextRecord(resolveOptions(FetchContext, {}), 'fetch-1', 'manual', undefined, undefined, undefined);
  let saved: typeof fetch;
  let sent: Array<string | null>;
  let base: typeof fetch;

  beforeEach(() => {
    saved = globalThis.fetch;
    sent = [];
    base = ((_input: unknown, init?: RequestInit) => {
      sent.push(new globalThis.Headers(init?.headers).get('x-request-id'));
      return Promise.resolve(new Response('ok'));
    }) as typeof fetch;
    globalThis.fetch = base;
  });
  afterEach(() => {
    globalThis.fetch = saved;
  });

  const call = () => storage.run(record, () => globalThis.fetch('http://127.0.0.1:1/'));

  it('is reference-counted: the first app to uninstall leaves the second app propagating', async () => {
    const undoA = propagateGlobalFetch();
    const undoB = propagateGlobalFetch();
    const installed = globalThis.fetch;
    expect(installed).not.toBe(base);
    undoA();
    undoA(); // a second call of the same undo does not count twice
    expect(globalThis.fetch).toBe(installed);
    await call();
    expect(sent).toEqual(['fetch-1']);
    undoB();
    expect(globalThis.fetch).toBe(base);
    await call();
    expect(sent).toEqual(['fetch-1', null]);
  });

  it('keeps a wrapper installed over ours (instrumentation) on a later install and on uninstall', async () => {
    const undoA = propagateGlobalFetch();
    const ours = globalThis.fetch;
    let instrumentedCalls = 0;
    const instrumented = ((...args: Parameters<typeof fetch>) => {
      instrumentedCalls++;
      return ours(...args);
    }) as typeof fetch;
    globalThis.fetch = instrumented;
    const undoB = propagateGlobalFetch();
    expect(globalThis.fetch).toBe(instrumented);
    await call();
    expect(sent).toEqual(['fetch-1']);
    expect(instrumentedCalls).toBe(1);
    undoA();
    undoB();
    expect(globalThis.fetch).toBe(instrumented);
    // After the last uninstall the next install starts over, wrapping the current fetch.
    const undoC = propagateGlobalFetch();
    expect(globalThis.fetch).not.toBe(instrumented);
    undoC();
    expect(globalThis.fetch).toBe(instrumented);
  });

  it('propagateContext(fetch) rejects (never throws synchronously) on invalid headers, like the native fetch', async () => {
    const wrapped = propagateFetch(base);
    let result: Promise<Response> | undefined;
    expect(() => {
      result = storage.run(record, () => wrapped('http://127.0.0.1:1/', { headers: { 'bad header': 'x' } }));
    }).not.toThrow();
    await expect(result).rejects.toThrow(/invalid header name/);
    expect(sent).toEqual([]);
  });
});
