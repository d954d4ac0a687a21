/**
 * One runtime per app (issue #13), microservices: several Nest apps in one process, over real TCP
 * servers and Redis. Every message handler is bound to its own app when Nest registers it, so its
 * guards (which run before Nest's interceptors) see the context of their own app, opened from the
 * message's metadata — never another app's, and never none because other apps are running too.
 */
import 'reflect-metadata';
import {
  Controller,
  Get,
  Injectable,
  Module,
  UseGuards,
  type CanActivate,
  type ExecutionContext,
  type INestApplication,
  type INestMicroservice,
  type Type,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxyFactory, MessagePattern, Payload, Transport, type ClientProxy, type MicroserviceOptions } from '@nestjs/microservices';
import { ExpressAdapter } from '@nestjs/platform-express';
import { firstValueFrom } from 'rxjs';
import { ContextModule, ContextService, currentContext, type ContextInit } from '../../src/index.js';
import { ContextMicroservicesModule } from '../../src/integrations/microservices/index.js';
import { CONTEXT_ENVELOPE_KEY } from '../../src/integrations/microservices/envelope.js';
import { bootApp } from '../utils/platforms.js';
import { brokers, freePort, requireBroker, uniqueName } from '../utils/brokers.js';

/** What one access path showed: the active context's class and id, or the name of the error it threw. */
interface Look {
  cls?: string;
  id?: string;
  error?: string;
}

/** What a guard and its handler saw of one message, through `currentContext` and the app's `ContextService`. */
interface Saw {
  guard: { current: Look; service: Look } | undefined;
  handler: { current: Look; service: Look };
  /** The payload's `n` as the handler got it (`undefined` if it got the envelope itself). */
  n: unknown;
}

function lookCurrent(): Look {
  try {
    const context = currentContext as unknown as { correlationId?: string };
    return { cls: (context as object).constructor.name, id: context.correlationId };
  } catch (error) {
    return { error: (error as Error).name };
  }
}

function lookService(service: ContextService<object>): Look {
  try {
    const context = service.get() as { correlationId?: string };
    return { cls: context.constructor.name, id: context.correlationId };
  } catch (error) {
    return { error: (error as Error).name };
  }
}

/** A context class of its own for one app, named `name`. */
function contextClass(name: string): Type {
  const named = {
    [name]: class {
      correlationId: string;
      constructor({ correlationId }: ContextInit) {
        this.correlationId = correlationId;
      }
    },
  };
  return named[name] as Type;
}

/**
 * The module of one app: `ContextModule.forRoot(contextType)`, `ContextMicroservicesModule` when
 * `withIntegration`, and a message handler on `pattern` behind a guard that writes what it saw
 * into the payload (which the handler returns).
 */
function appModule(contextType: Type, pattern: string, withIntegration: boolean): Type {
  @Injectable()
  class SpyGuard implements CanActivate {
    constructor(private readonly service: ContextService<object>) {}
    canActivate(ctx: ExecutionContext): boolean {
      const data = ctx.switchToRpc().getData<Record<string, unknown>>();
      if (data !== null && typeof data === 'object') data.guard = { current: lookCurrent(), service: lookService(this.service) };
      return true;
    }
  }

  @Controller()
  class WhoController {
    constructor(private readonly service: ContextService<object>) {}
    @UseGuards(SpyGuard)
    @MessagePattern(pattern)
    who(@Payload() payload: { guard?: Saw['guard']; n?: unknown }): Saw {
      return { guard: payload.guard, handler: { current: lookCurrent(), service: lookService(this.service) }, n: payload.n };
    }
  }

  @Module({
    imports: [ContextModule.forRoot(contextType), ...(withIntegration ? [ContextMicroservicesModule.forRoot()] : [])],
    controllers: [WhoController],
  })
  class AppModule {}
  return AppModule;
}

/** A payload carrying `id` in the fallback envelope, which receivers of NestJS 11 and 12 read. */
function envelope(id: string, n: number): unknown {
  return { [CONTEXT_ENVELOPE_KEY]: { 'x-request-id': id }, data: { n } };
}

/** What the guard and the handler of an app whose context class is `cls` must see for a message sent with `id`. */
function own(cls: string, id: string, n: number): Saw {
  const look = { cls, id };
  return { guard: { current: look, service: look }, handler: { current: look, service: look }, n };
}

/** How the apps and their clients reach each other on one transport. */
interface TransportCase {
  name: string;
  setup(): Promise<void>;
  server(): Promise<MicroserviceOptions>;
  client(server: MicroserviceOptions): ClientProxy;
}

const cases: TransportCase[] = [
  {
    name: 'TCP',
    setup: () => Promise.resolve(),
    server: async () => ({ transport: Transport.TCP, options: { host: '127.0.0.1', port: await freePort() } }),
    client: (server) => ClientProxyFactory.create(server as never) as unknown as ClientProxy,
  },
  {
    name: 'Redis',
    setup: () => requireBroker('redis'),
    server: () => Promise.resolve({ transport: Transport.REDIS, options: { host: brokers.redis.host, port: brokers.redis.port } }),
    client: (server) => ClientProxyFactory.create(server as never) as unknown as ClientProxy,
  },
];

/** One running microservice app and a client that reaches it. */
interface Running {
  app: INestMicroservice;
  client: ClientProxy;
  pattern: string;
  cls: string;
}

describe.each(cases)('one runtime per app over $name', (transport) => {
  const running: Running[] = [];

  beforeAll(() => transport.setup());

  afterEach(async () => {
    for (const { app, client } of running.splice(0).reverse()) {
      await client.close();
      await app.close();
    }
  });

  async function start(cls: string, withIntegration: boolean): Promise<Running> {
    const pattern = uniqueName(`apps.${cls}`);
    const options = await transport.server();
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(appModule(contextClass(cls), pattern, withIntegration), {
      ...options,
      logger: false,
    } as never);
    await app.listen();
    const one = { app, client: transport.client(options), pattern, cls };
    running.push(one);
    return one;
  }

  const ask = ({ client, pattern }: Running, id: string, n: number): Promise<Saw> => firstValueFrom(client.send<Saw>(pattern, envelope(id, n)));

  it("three apps with the integration: every guard sees its own app's context class and the id its caller sent", async () => {
    const apps = [await start('ContextOne', true), await start('ContextTwo', true), await start('ContextThree', true)];
    // Interleaved, several in flight per app.
    const sent = apps.flatMap((app, i) => [1, 2, 3].map((n) => ({ app, id: `${app.cls}-${i}-${n}-${Math.random().toString(36).slice(2, 8)}`, n })));
    const seen = await Promise.all(sent.map(({ app, id, n }) => ask(app, id, n)));
    expect(seen).toEqual(sent.map(({ app, id, n }) => own(app.cls, id, n)));
  });

  it("an app without the integration next to one with it: its guards never see the other app's context class or the sent id", async () => {
    const bare = await start('ContextBare', false);
    const wired = await start('ContextWired', true);
    // Registered after the integration was installed by the other app: still left alone.
    const late = await start('ContextLate', false);
    expect(await ask(wired, 'wired-1', 1)).toEqual(own('ContextWired', 'wired-1', 1));
    for (const app of [bare, late]) {
      const id = `${app.cls}-1`;
      const saw = await ask(app, id, 1);
      for (const look of [saw.guard?.current, saw.guard?.service]) {
        expect(look?.cls).not.toBe('ContextWired');
        expect(look?.id).not.toBe(id);
      }
      // Its own interceptor opens its own context for the handler; without the integration it reads
      // no message metadata (a fresh id), and its payloads are left as they were sent.
      expect(saw.handler.current.cls).toBe(app.cls);
      expect(saw.handler.service.cls).toBe(app.cls);
      expect(saw.handler.current.id).not.toBe(id);
      expect(saw.n).toBeUndefined();
    }
  });
});

describe('a hybrid app (HTTP + connectMicroservice) next to a standalone microservice app', () => {
  @Controller()
  class HttpController {
    constructor(private readonly service: ContextService<object>) {}
    @Get('who')
    who(): Look {
      return lookService(this.service);
    }
  }

  let hybrid: INestApplication | undefined;
  let standalone: INestMicroservice | undefined;
  const clients: ClientProxy[] = [];

  afterAll(async () => {
    for (const client of clients) await client.close();
    await hybrid?.close();
    await standalone?.close();
  });

  it('both keep working: HTTP, and the messages of each app in its own context (guards included)', async () => {
    const hybridPattern = uniqueName('apps.hybrid');
    const standalonePattern = uniqueName('apps.standalone');
    const hybridOptions = { transport: Transport.TCP, options: { host: '127.0.0.1', port: await freePort() } } as const;
    const standaloneOptions = { transport: Transport.TCP, options: { host: '127.0.0.1', port: await freePort() } } as const;

    standalone = await NestFactory.createMicroservice<MicroserviceOptions>(appModule(contextClass('ContextStandalone'), standalonePattern, true), {
      ...standaloneOptions,
      logger: false,
    });
    await standalone.listen();

    const HybridBase = appModule(contextClass('ContextHybrid'), hybridPattern, true);
    @Module({ imports: [HybridBase], controllers: [HttpController] })
    class HybridModule {}
    // Without inheritAppConfig: Nest's global interceptor does not run for these handlers, so the
    // context comes from the handler's own binding to this app.
    hybrid = await bootApp(HybridModule, () => new ExpressAdapter(), (app) => app.connectMicroservice(hybridOptions));
    await hybrid.startAllMicroservices();
    await hybrid.listen(0, '127.0.0.1');
    const url = (await hybrid.getUrl()).replace('[::1]', '127.0.0.1');

    const toHybrid = ClientProxyFactory.create(hybridOptions);
    const toStandalone = ClientProxyFactory.create(standaloneOptions);
    clients.push(toHybrid, toStandalone);

    const res = await fetch(`${url}/who`, { headers: { 'x-request-id': 'http-1' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ cls: 'ContextHybrid', id: 'http-1' });

    const [viaHybrid, viaStandalone] = await Promise.all([
      firstValueFrom(toHybrid.send<Saw>(hybridPattern, envelope('hybrid-1', 1))),
      firstValueFrom(toStandalone.send<Saw>(standalonePattern, envelope('standalone-1', 2))),
    ]);
    expect(viaHybrid).toEqual(own('ContextHybrid', 'hybrid-1', 1));
    expect(viaStandalone).toEqual(own('ContextStandalone', 'standalone-1', 2));
  });
});
