/**
 * One runtime per app (issue #13), WebSockets: several Nest apps with gateways in one process (the
 * same gateway and guard classes in each). Guards run before Nest's interceptors, so they see a
 * context only where `ContextWsModule` entered it around the message; each app's wrapper belongs
 * to that app's WebSocket adapter, so a guard sees its own app's context class and the id its
 * client's handshake carried — never another app's, and never none because other apps exist.
 * The microservices analogue is test/transports/apps.e2e-spec.ts.
 */
import 'reflect-metadata';
import { Injectable, Module, UseGuards, type CanActivate, type ExecutionContext, type INestApplication, type Type } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { Test } from '@nestjs/testing';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import { ContextModule, ContextService, currentContext, type ContextInit } from 'nestjs-context';
import { ContextWsModule } from 'nestjs-context/websockets';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { liveApps } from '../../src/runtime/apps.js';

/** The installed NestJS major (11 or 12): NestJS 11 does not apply the global interceptor to gateways. */
const NEST_MAJOR = Number((createRequire(import.meta.url)('@nestjs/core/package.json') as { version: string }).version.split('.')[0]);

/** What one access path showed: the active context's class and id, or the name of the error it threw. */
interface Look {
  cls?: string;
  id?: string;
  error?: string;
}

/** What the guard and the handler of one message saw, through `currentContext` and the app's `ContextService`. */
interface Saw {
  guard: { current: Look; service: Look };
  handler: { current: Look; service: Look };
  n: number;
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

/** Writes what it sees into the message's payload, which the handler returns. Shared by every app. */
@Injectable()
class SpyGuard implements CanActivate {
  constructor(private readonly service: ContextService<object>) {}
  canActivate(ctx: ExecutionContext): boolean {
    const data = ctx.switchToWs().getData<Record<string, unknown>>();
    data.guard = { current: lookCurrent(), service: lookService(this.service) };
    return true;
  }
}

/** One gateway class, instantiated by every app. */
@WebSocketGateway()
class WhoGateway {
  constructor(private readonly service: ContextService<object>) {}

  @UseGuards(SpyGuard)
  @SubscribeMessage('who')
  async who(@MessageBody() body: { n: number; guard: Saw['guard'] }): Promise<Saw> {
    await new Promise((resolve) => setTimeout(resolve, body.n % 3));
    return { guard: body.guard, handler: { current: lookCurrent(), service: lookService(this.service) }, n: body.n };
  }
}

/** One running gateway app. */
interface Running {
  app: INestApplication;
  url: string;
  cls: string;
}

const running: Running[] = [];
const sockets: ClientSocket[] = [];

/** Boots an app whose context class is named `cls`, with `ContextWsModule` (handshake ids trusted) when `withIntegration`. */
async function start(cls: string, withIntegration: boolean): Promise<Running> {
  @Module({
    imports: [ContextModule.forRoot(contextClass(cls)), ...(withIntegration ? [ContextWsModule.forRoot({ handshake: true })] : [])],
    providers: [WhoGateway, SpyGuard],
  })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
  app.useWebSocketAdapter(new IoAdapter(app));
  await app.listen(0, '127.0.0.1');
  const one = { app, url: `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`, cls };
  running.push(one);
  return one;
}

function connect({ url }: Running, id: string): Promise<ClientSocket> {
  const socket = io(url, { transports: ['websocket'], extraHeaders: { 'x-request-id': id }, forceNew: true, reconnection: false });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

const ask = (socket: ClientSocket, n: number): Promise<Saw> => socket.timeout(10_000).emitWithAck('who', { n }) as Promise<Saw>;

/** What the guard and the handler of an app whose context class is `cls` must see for a message on a connection opened with `id`. */
function own(cls: string, id: string, n: number): Saw {
  const look = { cls, id };
  return { guard: { current: look, service: look }, handler: { current: look, service: look }, n };
}

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.disconnect();
  for (const { app } of running.splice(0).reverse()) await app.close();
  expect(liveApps()).toHaveLength(0);
});

describe('WebSocket guards of several apps in one process', () => {
  it("three apps with ContextWsModule: every guard sees its own app's context class and its connection's id (interleaved, several in flight)", async () => {
    const apps = [await start('WsContextOne', true), await start('WsContextTwo', true), await start('WsContextThree', true)];
    const connections = await Promise.all(
      apps.flatMap((app, i) => [1, 2].map(async (c) => ({ app, id: `${app.cls}-${i}-${c}`, socket: await connect(app, `${app.cls}-${i}-${c}`) }))),
    );
    const sent = connections.flatMap((conn) => [1, 2, 3].map((n) => ({ ...conn, n })));
    const seen = await Promise.all(sent.map(({ socket, n }) => ask(socket, n)));
    expect(seen).toEqual(sent.map(({ app, id, n }) => own(app.cls, id, n)));
  });

  it("an app without ContextWsModule next to ones with it (created before and after): its guards see no context, never another app's", async () => {
    const bare = await start('WsContextBare', false);
    const wired = await start('WsContextWired', true);
    const late = await start('WsContextLate', false);
    const wiredSocket = await connect(wired, 'wired-1');
    expect(await ask(wiredSocket, 1)).toEqual(own('WsContextWired', 'wired-1', 1));
    for (const app of [bare, late]) {
      const id = `${app.cls}-1`;
      const saw = await ask(await connect(app, id), 2);
      // Without the integration the guard runs before any context exists (the interceptor opens it later).
      expect(saw.guard).toEqual({ current: { error: 'ContextNotActiveError' }, service: { error: 'ContextNotActiveError' } });
      if (NEST_MAJOR < 12) {
        // NestJS 11 applies no global interceptor to gateways: without the integration, no context at all.
        expect(saw.handler).toEqual(saw.guard);
        continue;
      }
      // Its own interceptor gives the handler a context of its own app's class, with a fresh id (it reads no handshake).
      expect(saw.handler.current.cls).toBe(app.cls);
      expect(saw.handler.service.cls).toBe(app.cls);
      expect(saw.handler.current.id).toBe(saw.handler.service.id);
      expect(saw.handler.current.id).not.toBe(id);
    }
    // The wired app is unaffected by the others.
    expect(await ask(wiredSocket, 3)).toEqual(own('WsContextWired', 'wired-1', 3));
  });

  it('an app closed while another keeps running: the survivor\'s guards still see their own context', async () => {
    const first = await start('WsContextFirst', true);
    const second = await start('WsContextSecond', true);
    const s1 = await connect(first, 'first-1');
    const s2 = await connect(second, 'second-1');
    expect(await ask(s1, 1)).toEqual(own('WsContextFirst', 'first-1', 1));
    s1.disconnect();
    await first.app.close();
    running.splice(running.indexOf(first), 1);
    expect(await ask(s2, 2)).toEqual(own('WsContextSecond', 'second-1', 2));
    const third = await start('WsContextThird', true);
    expect(await ask(await connect(third, 'third-1'), 3)).toEqual(own('WsContextThird', 'third-1', 3));
    expect(await ask(s2, 4)).toEqual(own('WsContextSecond', 'second-1', 4));
  });
});
