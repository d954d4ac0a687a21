import 'reflect-metadata';
import { Controller, Injectable, Module, UseGuards, type CanActivate, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientNats,
  ClientProxy,
  ClientProxyFactory,
  EventPattern,
  MessagePattern,
  NatsRecord,
  Transport,
  type MicroserviceOptions,
} from '@nestjs/microservices';
import { firstValueFrom, map } from 'rxjs';
import { ContextModule, ContextService, currentContext, type ContextInit } from '../../src/index.js';
import {
  ContextMicroservicesModule,
  propagateGlobalClients,
  propagateContext,
} from '../../src/integrations/microservices/index.js';
import { withOutboundContext } from '../../src/integrations/microservices/client.js';
import { CONTEXT_ENVELOPE_KEY } from '../../src/integrations/microservices/envelope.js';
import { loadOptionalDeps, loaded } from '../../src/integrations/microservices/optional-deps.js';
import { brokers, freePort, requireBroker } from '../utils/brokers.js';
import { TransportContext } from './fixtures/harness.js';

@Controller()
class EchoController {
  @MessagePattern('regress.echo')
  echo(n: number): Promise<number> {
    return new Promise((resolve) => setTimeout(() => resolve(n), 5));
  }
}

@Module({ imports: [ContextModule.forRoot(TransportContext), ContextMicroservicesModule.forRoot()], controllers: [EchoController] })
class EchoModule {}

/**
 * Request A awaits a reply (the client connects inside A), then request B sends, maps and
 * subscribes: every callback of B's Observable must see B, not A.
 */
async function replyContexts(server: MicroserviceOptions, client: MicroserviceOptions): Promise<string[]> {
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(EchoModule, { ...server, logger: false });
  await app.listen();
  const contexts = app.get<ContextService<TransportContext>>(ContextService);
  const proxy = ClientProxyFactory.create(client as never) as unknown as ClientProxy;
  try {
    await contexts.run(() => firstValueFrom(proxy.send('regress.echo', 1)), { correlationId: 'req-A' });
    return await contexts.run(
      () =>
        new Promise<string[]>((resolve, reject) => {
          const seen: string[] = [];
          proxy
            .send('regress.echo', 2)
            .pipe(
              map((value) => {
                seen.push(`map:${currentContext.correlationId}`);
                return value;
              }),
            )
            .subscribe({
              next: () => seen.push(`next:${currentContext.correlationId}`),
              error: reject,
              complete: () => {
                seen.push(`complete:${currentContext.correlationId}`);
                resolve(seen);
              },
            });
        }),
      { correlationId: 'req-B' },
    );
  } finally {
    await proxy.close();
    await app.close();
  }
}

describe('reply Observables run in the context of the send() call', () => {
  beforeAll(() => requireBroker('redis'));

  it('TCP: a later request never sees the context of the request that connected the client', async () => {
    const options = { host: '127.0.0.1', port: await freePort() };
    const seen = await replyContexts({ transport: Transport.TCP, options }, { transport: Transport.TCP, options } as never);
    expect(seen).toEqual(['map:req-B', 'next:req-B', 'complete:req-B']);
  });

  it('Redis: a later request never sees the context of the request that connected the client', async () => {
    const options = { host: brokers.redis.host, port: brokers.redis.port };
    const seen = await replyContexts({ transport: Transport.REDIS, options }, { transport: Transport.REDIS, options } as never);
    expect(seen).toEqual(['map:req-B', 'next:req-B', 'complete:req-B']);
  });

  it('outside any context the reply callbacks run outside any context too', async () => {
    const options = { host: '127.0.0.1', port: await freePort() };
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(EchoModule, { transport: Transport.TCP, options, logger: false });
    await app.listen();
    const contexts = app.get<ContextService<TransportContext>>(ContextService);
    const proxy = ClientProxyFactory.create({ transport: Transport.TCP, options });
    try {
      await contexts.run(() => firstValueFrom(proxy.send('regress.echo', 1)), { correlationId: 'req-A' });
      const seen = await firstValueFrom(proxy.send('regress.echo', 2).pipe(map(() => contexts.active)));
      expect(seen).toBe(false);
    } finally {
      await proxy.close();
      await app.close();
    }
  });
});

describe('event handler chains whose first handler is request-scoped', () => {
  const seen: Record<string, string> = {};
  let finished: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finished = resolve));

  @Injectable()
  class SpyGuard implements CanActivate {
    canActivate(): boolean {
      seen.guard2 = currentContext.correlationId;
      return true;
    }
  }

  @Controller()
  class RequestScopedFirst {
    // Injecting the context class makes this controller request-scoped.
    constructor(private readonly context: TransportContext) {}
    @EventPattern('regress.chain')
    on(_payload: unknown): void {
      seen.handler1 = this.context.correlationId;
    }
  }

  @Controller()
  class Second {
    @UseGuards(SpyGuard)
    @EventPattern('regress.chain')
    on(payload: { x: number }): void {
      seen.handler2 = currentContext.correlationId;
      seen.payload2 = JSON.stringify(payload);
      finished();
    }
  }

  @Module({
    imports: [ContextModule.forRoot(TransportContext), ContextMicroservicesModule.forRoot()],
    controllers: [RequestScopedFirst, Second],
    providers: [SpyGuard],
  })
  class ChainModule {}

  it('the next handlers (and their guards) get the sender context and the unwrapped payload', async () => {
    const options = { host: '127.0.0.1', port: await freePort() };
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(ChainModule, { transport: Transport.TCP, options, logger: false });
    await app.listen();
    const contexts = app.get<ContextService<TransportContext>>(ContextService);
    const proxy = ClientProxyFactory.create({ transport: Transport.TCP, options });
    try {
      await contexts.run(() => firstValueFrom(proxy.emit('regress.chain', { x: 1 })), { correlationId: 'sender-id' });
      await done;
      expect(seen).toEqual({ handler1: 'sender-id', guard2: 'sender-id', handler2: 'sender-id', payload2: '{"x":1}' });
    } finally {
      await proxy.close();
      await app.close();
    }
  });
});

describe('two apps in one process, only one with ContextMicroservicesModule', () => {
  class ContextX {
    correlationId: string;
    constructor({ correlationId }: ContextInit) {
      this.correlationId = correlationId;
    }
  }
  class ContextY {
    correlationId: string;
    constructor({ correlationId }: ContextInit) {
      this.correlationId = correlationId;
    }
  }

  @Controller()
  class WhoController {
    @MessagePattern('regress.who')
    who(): string {
      return (currentContext as object).constructor.name;
    }
  }

  @Module({ imports: [ContextModule.forRoot(ContextX), ContextMicroservicesModule.forRoot()] })
  class WithModule {}

  @Module({ imports: [ContextModule.forRoot(ContextY)], controllers: [WhoController] })
  class WithoutModule {}

  it("the app without the module runs its handlers in its own context, not the other app's", async () => {
    const x = await NestFactory.create(WithModule, { logger: false });
    await x.init();
    const options = { host: '127.0.0.1', port: await freePort() };
    let y: INestMicroservice | undefined;
    const proxy = ClientProxyFactory.create({ transport: Transport.TCP, options });
    try {
      y = await NestFactory.createMicroservice<MicroserviceOptions>(WithoutModule, { transport: Transport.TCP, options, logger: false });
      await y.listen();
      expect(await firstValueFrom(proxy.send('regress.who', 1))).toBe('ContextY');
    } finally {
      await proxy.close();
      await y?.close();
      await x.close();
    }
  });
});

describe('client patches', () => {
  @Module({ imports: [ContextModule.forRoot(TransportContext)] })
  class SenderModule {}

  it('propagateContext() keeps carrying the context after a global install is removed, once', async () => {
    const app = await NestFactory.createApplicationContext(SenderModule, { logger: false });
    const contexts = app.get<ContextService<TransportContext>>(ContextService);
    const uninstall = await propagateGlobalClients();
    const client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: 1 } }) as ClientProxy;
    // No broker: capture the packet the client would publish.
    const packets: Array<{ data?: unknown; metadata?: Record<string, string> }> = [];
    Object.assign(client, {
      connect: () => Promise.resolve(),
      publish: (packet: { data?: unknown; metadata?: Record<string, string> }, callback: (reply: unknown) => void) => {
        packets.push(packet);
        callback({ response: 'ok', isDisposed: true });
        return () => undefined;
      },
    });
    try {
      propagateContext(client);
      uninstall();
      const reply = await contexts.run(() => firstValueFrom(client.send('regress.packet', { a: 1 })), { correlationId: 'ctx-1' });
      expect(reply).toBe('ok');
      expect(packets).toHaveLength(1);
      const packet = packets[0]!;
      const envelope = packet.data as Record<string, unknown>;
      const carried = packet.metadata?.['x-request-id'] ?? (envelope[CONTEXT_ENVELOPE_KEY] as Record<string, string> | undefined)?.['x-request-id'];
      expect(carried).toBe('ctx-1');
      // Never injected twice: the payload is enveloped at most once.
      const inner = (envelope[CONTEXT_ENVELOPE_KEY] === undefined ? envelope : envelope.data) as Record<string, unknown>;
      expect(inner).toEqual({ a: 1 });
    } finally {
      uninstall();
      await app.close();
    }
  });

  it('a reused NatsRecord is never changed when the NATS headers factory is not loaded', async () => {
    await loadOptionalDeps();
    const make = loaded.natsHeaders;
    expect(make).toBeDefined();
    const app = await NestFactory.createApplicationContext(SenderModule, { logger: false });
    const contexts = app.get<ContextService<TransportContext>>(ContextService);
    const client = new ClientNats({ servers: `nats://127.0.0.1:${brokers.nats.port}` } as never);
    const own = make!();
    own.set('x-tenant', 't1');
    const record = new NatsRecord({ n: 1 }, own as never);
    try {
      loaded.natsHeaders = undefined;
      const first = contexts.run(() => withOutboundContext(client, record), { correlationId: 'req-A' }) as NatsRecord;
      loaded.natsHeaders = make;
      expect(own.has('x-request-id')).toBe(false);
      expect(first.data).toEqual({ [CONTEXT_ENVELOPE_KEY]: expect.objectContaining({ 'x-request-id': 'req-A' }), data: { n: 1 } });
      expect(first.headers).toBe(own);
      const second = contexts.run(() => withOutboundContext(client, record), { correlationId: 'req-B' }) as NatsRecord;
      expect((second.headers as unknown as { get(name: string): string }).get('x-request-id')).toBe('req-B');
      expect((second.headers as unknown as { get(name: string): string }).get('x-tenant')).toBe('t1');
      expect(own.has('x-request-id')).toBe(false);
    } finally {
      loaded.natsHeaders = make;
      await app.close();
    }
  });
});
