import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { Controller, Get, Inject, Module, type INestApplication, type INestMicroservice, type OnModuleInit } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, GrpcMethod, Transport, type ClientGrpc, type MicroserviceOptions } from '@nestjs/microservices';
import { ExpressAdapter } from '@nestjs/platform-express';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { firstValueFrom, type Observable } from 'rxjs';
import { ContextModule, Ctx as ContextParam, ContextService } from '../../src/index.js';
import { activeContext as getCurrentContext } from '../utils/internals.js';
import { ContextMicroservicesModule } from '../../src/integrations/microservices/index.js';
import { bootApp } from '../utils/platforms.js';
import { freePort } from '../utils/brokers.js';
import {
  carriage,
  downstream,
  http,
  PARENT,
  serverContextOptions,
  snapshot,
  startDownstream,
  TRACE,
  TransportContext,
  UUID,
  type DownstreamSeen,
  type Seen,
} from './fixtures/harness.js';

const protoPath = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'echo.proto');
const GRPC_CLIENT = 'GRPC_UNDER_TEST';

interface EchoRequest {
  expect?: string;
  key?: string;
}
interface EchoReply {
  json: string;
}
interface EchoService {
  whoAmI(request: EchoRequest, metadata?: grpc.Metadata): Observable<EchoReply>;
  echoId(request: EchoRequest): Observable<EchoReply>;
  injected(request: EchoRequest): Observable<EchoReply>;
}

@Controller()
class EchoController {
  constructor(private readonly context: ContextService<TransportContext>) {}

  @GrpcMethod('Echo', 'WhoAmI')
  async whoAmI(request: EchoRequest, metadata: grpc.Metadata, _call: unknown): Promise<EchoReply> {
    const seen = snapshot({ ...request }, this.context, getCurrentContext() as unknown as TransportContext);
    seen.carriedBy = carriage(metadata);
    seen.downstream = (await http.get<DownstreamSeen>(`${downstream.url}/seen`)).data;
    return { json: JSON.stringify(seen) };
  }

  @GrpcMethod('Echo', 'EchoId')
  async echoId(request: EchoRequest): Promise<EchoReply> {
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
    return { json: JSON.stringify({ expect: request.expect, saw: this.context.correlationId, traceId: this.context.trace?.traceId }) };
  }
}

@Controller()
class InjectedEchoController {
  constructor(@Inject(TransportContext) private readonly ctx: TransportContext) {}

  @GrpcMethod('Echo', 'Injected')
  injected(): EchoReply {
    return { json: JSON.stringify({ same: this.ctx === getCurrentContext(), correlationId: this.ctx.correlationId }) };
  }
}

@Module({
  imports: [ContextModule.forRoot(TransportContext, serverContextOptions), ContextMicroservicesModule.forRoot()],
  controllers: [EchoController, InjectedEchoController],
})
class GrpcServerModule {}

function gatewayModule(url: string) {
  @Controller()
  class GrpcGatewayController implements OnModuleInit {
    private echo!: EchoService;
    constructor(
      @Inject(GRPC_CLIENT) private readonly client: ClientGrpc,
      private readonly context: ContextService<TransportContext>,
    ) {}

    onModuleInit(): void {
      this.echo = this.client.getService<EchoService>('Echo');
    }

    @Get('call')
    async call(@ContextParam('correlationId') correlationId: string) {
      const first = JSON.parse((await firstValueFrom(this.echo.whoAmI({ key: 'one' }))).json) as Seen;
      // Metadata the caller passes is kept, and the context is added to (a copy of) it.
      const own = new grpc.Metadata();
      own.set('x-tenant-hint', 'kept');
      const second = JSON.parse((await firstValueFrom(this.echo.whoAmI({ key: 'two' }, own))).json) as Seen;
      const trace = this.context.trace;
      return { gateway: { correlationId, traceId: trace?.traceId, spanId: trace?.spanId }, first, second, ownUntouched: own.get('traceparent').length === 0 };
    }

    @Get('injected')
    async injected() {
      return JSON.parse((await firstValueFrom(this.echo.injected({}))).json) as unknown;
    }

    /** For the in-flight test, called from inside contexts opened by the test. */
    echoId(expect: string): Promise<EchoReply> {
      return firstValueFrom(this.echo.echoId({ expect }));
    }
  }

  @Module({
    imports: [
      ContextModule.forRoot(TransportContext, serverContextOptions),
      ContextMicroservicesModule.forRoot(),
      ClientsModule.register([{ name: GRPC_CLIENT, transport: Transport.GRPC, options: { package: 'ctxtest', protoPath, url } }]),
    ],
    controllers: [GrpcGatewayController],
  })
  class GrpcGatewayModule {}
  return { GrpcGatewayModule, GrpcGatewayController };
}

interface RawEcho extends grpc.Client {
  WhoAmI(request: EchoRequest, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null, reply?: EchoReply) => void): grpc.ClientUnaryCall;
}

describe('context across gRPC (call metadata)', () => {
  let server: INestMicroservice;
  let gateway: INestApplication;
  let downstreamApp: INestApplication;
  let gatewayUrl = '';
  let url = '';
  let raw: RawEcho;
  let controller: { echoId(expect: string): Promise<EchoReply> };

  beforeAll(async () => {
    const started = await startDownstream();
    downstreamApp = started.app;
    downstream.url = started.url;
    url = `127.0.0.1:${await freePort()}`;
    server = await NestFactory.createMicroservice<MicroserviceOptions>(GrpcServerModule, {
      transport: Transport.GRPC,
      options: { package: 'ctxtest', protoPath, url },
      logger: false,
    });
    await server.listen();
    const { GrpcGatewayModule, GrpcGatewayController } = gatewayModule(url);
    gateway = await bootApp(GrpcGatewayModule, () => new ExpressAdapter());
    await gateway.listen(0, '127.0.0.1');
    gatewayUrl = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');
    controller = gateway.get(GrpcGatewayController);
    const definition = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath)) as unknown as {
      ctxtest: { Echo: new (address: string, credentials: grpc.ChannelCredentials) => RawEcho };
    };
    raw = new definition.ctxtest.Echo(url, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    raw?.close();
    await gateway?.close();
    await server?.close();
    await downstreamApp?.close();
  });

  function rawCall(metadata: grpc.Metadata): Promise<Seen> {
    return new Promise((resolve, reject) =>
      raw.WhoAmI({ key: 'raw' }, metadata, (error, reply) => (error ? reject(error) : resolve(JSON.parse(reply!.json) as Seen))),
    );
  }

  it('ids travel HTTP → gateway → gRPC call → handler → nested HTTP call', async () => {
    const res = await fetch(`${gatewayUrl}/call`, {
      headers: { 'x-request-id': 'grpc-1', traceparent: `00-${TRACE}-${PARENT}-01`, baggage: 'tenant=acme' },
    });
    expect(res.status).toBe(200);
    const { gateway: seenByGateway, first, second, ownUntouched } = (await res.json()) as {
      gateway: { correlationId: string; traceId: string; spanId: string };
      first: Seen;
      second: Seen;
      ownUntouched: boolean;
    };
    expect(seenByGateway).toMatchObject({ correlationId: 'grpc-1', traceId: TRACE });
    expect(ownUntouched).toBe(true);
    for (const seen of [first, second]) {
      expect(seen).toMatchObject({ correlationId: 'grpc-1', viaParam: 'grpc-1', viaCurrent: 'grpc-1', traceId: TRACE, tenant: 'acme', carriedBy: 'grpc-metadata' });
      expect(seen.parentId).toMatch(/^[0-9a-f]{16}$/);
      expect(seen.parentId).not.toBe(PARENT);
      expect(seen.spanId).not.toBe(seen.parentId);
      expect(seen.downstream).toMatchObject({ correlationId: 'grpc-1', traceId: TRACE });
    }
    expect(first.parentId).not.toBe(second.parentId);
  });

  it('constructor injection of the context class in a request-scoped gRPC controller', async () => {
    const res = await fetch(`${gatewayUrl}/injected`, { headers: { 'x-request-id': 'grpc-injected' } });
    expect(await res.json()).toEqual({ same: true, correlationId: 'grpc-injected' });
  });

  it('200 calls in flight at once: every handler sees its own context', async () => {
    const contexts = gateway.get(ContextService);
    const ids = Array.from({ length: 200 }, (_, i) => `grpc-${i}-${Math.random().toString(36).slice(2, 8)}`);
    const started = performance.now();
    const replies = await Promise.all(
      ids.map((id) =>
        contexts.run(async () => ({ reply: JSON.parse((await controller.echoId(id)).json) as { expect: string; saw: string; traceId: string }, traceId: contexts.trace?.traceId }), {
          correlationId: id,
        }),
      ),
    );
    const ms = performance.now() - started;
    expect(replies.filter(({ reply }) => reply.saw !== reply.expect)).toEqual([]);
    expect(replies.map(({ reply }) => reply.expect)).toEqual(ids);
    for (const { reply, traceId } of replies) expect(reply.traceId).toBe(traceId);
    process.stdout.write(`[gRPC] 200 unary calls in flight: ${ms.toFixed(0)} ms\n`);
  });

  it('a call made outside any context carries nothing and does not throw', async () => {
    const reply = JSON.parse((await controller.echoId('outside')).json) as { expect: string; saw: string };
    expect(reply).toMatchObject({ expect: 'outside' });
    expect(reply.saw).toMatch(UUID);
  });

  it('a call without metadata (raw grpc-js client) gets a fresh context', async () => {
    const seen = await rawCall(new grpc.Metadata());
    expect(seen.correlationId).toMatch(UUID);
    expect(seen.parentId).toBeUndefined();
    expect(seen.payload).toMatchObject({ key: 'raw' });
  });

  it('malformed metadata is ignored: fresh context, the handler still runs', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', '00-zzzz-garbage-01');
    metadata.set('tracestate', 'x'.repeat(6000));
    metadata.set('baggage', ';;;=,,%%%');
    metadata.set('x-request-id', 'y'.repeat(6000));
    metadata.set('x-correlation-id', 'bad id with spaces');
    metadata.set('__proto__', 'polluted');
    metadata.set('traceparent-bin', Buffer.from([1, 2, 3]));
    const seen = await rawCall(metadata);
    expect(seen.correlationId).toMatch(UUID);
    expect(seen.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(seen.parentId).toBeUndefined();
    expect(seen.tenant).toBeUndefined();
    expect(seen.payload).toMatchObject({ key: 'raw' });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
