import 'reflect-metadata';
import { Controller, Get, Inject, Module, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, Ctx, MessagePattern, TcpContext, Transport, type ClientProxy } from '@nestjs/microservices';
import { ExpressAdapter } from '@nestjs/platform-express';
import { firstValueFrom } from 'rxjs';
import { SpanKind } from '@opentelemetry/api';
import { ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { createLogFields } from '../../src/integrations/logger/index.js';
import { ContextMicroservicesModule } from '../../src/integrations/microservices/index.js';
import { ContextOpenTelemetryModule } from '../../src/integrations/opentelemetry/index.js';
import { freePort } from '../utils/brokers.js';
import { bootApp } from '../utils/platforms.js';
import { OUTSIDE, startOtel, type OtelSdk } from './otel-sdk.js';

class TransportContext {
  correlationId: string;
  tenant?: string;
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

const fields = createLogFields();
const CLIENT = 'OTEL_TCP_CLIENT';

interface HandlerSaw {
  /** The packet metadata (NestJS 12); `null` on NestJS 11, where the context travels in the envelope the server unwraps. */
  metadata: Record<string, unknown> | null;
  traceId: string;
  parentId: string | undefined;
  correlationId: string;
  tenant: string | undefined;
  line: Record<string, unknown>;
}

@Controller()
class HandlerController {
  constructor(private readonly context: ContextService<TransportContext>) {}
  @MessagePattern('otel.whoami')
  whoami(@Ctx() transport: TcpContext): HandlerSaw {
    const trace = this.context.trace!;
    return {
      metadata: typeof transport.getMetadata === 'function' ? { ...(transport.getMetadata() as Record<string, unknown>) } : null,
      traceId: trace.traceId,
      parentId: trace.parentId,
      correlationId: this.context.correlationId ?? '',
      tenant: this.context.get().tenant,
      line: { ...fields.current() },
    };
  }
}

@Controller()
class GatewayController {
  constructor(
    @Inject(CLIENT) private readonly client: ClientProxy,
    private readonly context: ContextService<TransportContext>,
  ) {}
  @Get('call')
  async call(): Promise<{ traceId: string; spanId: string; correlationId: string; saw: HandlerSaw }> {
    this.context.get().tenant = 'acme';
    const saw = await firstValueFrom(this.client.send<HandlerSaw>('otel.whoami', {}));
    return { traceId: this.context.trace!.traceId, spanId: this.context.trace!.spanId, correlationId: this.context.correlationId ?? '', saw };
  }
}

const options = { baggage: { fields: ['tenant'] } };

describe('OpenTelemetry SDK + nestjs-context over a Nest TCP transport (no OTel instrumentation there)', () => {
  let otel: OtelSdk;
  let service: INestMicroservice;
  let gateway: INestApplication;
  let url: string;

  beforeAll(async () => {
    otel = startOtel();
    const port = await freePort();
    const tcp = { host: '127.0.0.1', port };
    @Module({
      imports: [ContextModule.forRoot(TransportContext, options), ContextMicroservicesModule.forRoot(), ContextOpenTelemetryModule.forRoot()],
      controllers: [HandlerController],
    })
    class ServiceModule {}
    service = await NestFactory.createMicroservice(ServiceModule, { transport: Transport.TCP, options: tcp, logger: false });
    await service.listen();
    @Module({
      imports: [
        ContextModule.forRoot(TransportContext, options),
        ContextMicroservicesModule.forRoot(),
        ContextOpenTelemetryModule.forRoot(),
        ClientsModule.register([{ name: CLIENT, transport: Transport.TCP, options: tcp }]),
      ],
      controllers: [GatewayController],
    })
    class GatewayModule {}
    gateway = await bootApp(GatewayModule, () => new ExpressAdapter());
    await gateway.listen(0, '127.0.0.1');
    url = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await gateway.close();
    await service.close();
    await otel.shutdown();
  });

  it("the packet metadata carries OTel's active context, once; the handler continues OTel's trace", async () => {
    const res = await fetch(`${url}/call`, { headers: { [OUTSIDE]: '1' } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { traceId: string; spanId: string; correlationId: string; saw: HandlerSaw };
    const spans = await otel.until((s) => s.some((span) => span.kind === SpanKind.SERVER && span.spanContext().traceId === body.traceId));
    const server = spans.find((span) => span.kind === SpanKind.SERVER && span.spanContext().traceId === body.traceId)!;
    // the gateway's record adopted the server span; the hop names it as parent (OTel's own traceparent)
    expect(body.spanId).toBe(server.spanContext().spanId);
    if (body.saw.metadata !== null) {
      expect(body.saw.metadata.traceparent).toBe(`00-${body.traceId}-${server.spanContext().spanId}-01`);
      expect(body.saw.metadata.baggage).toBe('tenant=acme');
      expect(body.saw.metadata['x-request-id']).toBe(body.correlationId);
    }
    // the consumer (no OTel span there) continues the same trace from the metadata
    expect(body.saw.traceId).toBe(body.traceId);
    expect(body.saw.parentId).toBe(server.spanContext().spanId);
    expect(body.saw.correlationId).toBe(body.correlationId);
    expect(body.saw.tenant).toBe('acme');
    expect(body.saw.line.traceId).toBe(body.traceId);
  });
});
