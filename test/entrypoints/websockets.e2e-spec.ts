import 'reflect-metadata';
import { Injectable, Module, UseGuards, type CanActivate, type INestApplication } from '@nestjs/common';
import { map, timer, type Observable } from 'rxjs';
import { ConnectedSocket, MessageBody, SubscribeMessage, WebSocketGateway, type OnGatewayConnection } from '@nestjs/websockets';
import { Test } from '@nestjs/testing';
import { ExpressAdapter } from '@nestjs/platform-express';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import type { Socket } from 'socket.io';
import { ContextModule, Ctx as ContextParam, ContextService, currentContext, type ContextModuleOptions } from 'nestjs-context';
import { ContextWsModule, type ContextWsOptions } from 'nestjs-context/websockets';
import { createRequire } from 'node:module';
import { MyContext } from '../fixtures/app-context.js';
import { Log, sleep } from './log.js';

/** The installed NestJS major (11 or 12): the suite runs on both. */
const NEST_MAJOR = Number((createRequire(import.meta.url)('@nestjs/core/package.json') as { version: string }).version.split('.')[0]);

interface Answer {
  n: number;
  id: string;
  param: string;
  current: string;
  afterAwait: string;
  sameObject: boolean;
  traceId: string;
  spanId: string;
  source: string;
  guarded: string | undefined;
}

class WsContext extends MyContext {
  readonly source: string;
  constructor(init: ConstructorParameters<typeof MyContext>[0]) {
    super(init);
    this.source = init.source;
  }
}

/** A guard that marks the context: it sees it only when the context is entered before the pipeline. */
@Injectable()
class MarkGuard implements CanActivate {
  constructor(private readonly context: ContextService<WsContext>) {}
  canActivate(): boolean {
    const ctx = this.context.getOrUndefined();
    if (ctx !== undefined) ctx.userId = `guarded:${ctx.correlationId}`;
    return true;
  }
}

const connections = new Log<{ key: string; id: string | undefined }>();

@WebSocketGateway()
@UseGuards(MarkGuard)
class Gateway implements OnGatewayConnection {
  constructor(private readonly context: ContextService<WsContext>) {}

  handleConnection(client: Socket): void {
    connections.push({ key: String(client.handshake.headers['x-request-id']), id: this.context.correlationId });
  }

  @SubscribeMessage('who')
  async who(@MessageBody() body: { n: number; wait: number }, @ConnectedSocket() _client: Socket, @ContextParam() ctx: WsContext): Promise<Answer> {
    const id = this.context.correlationId!;
    await sleep(body.wait);
    return {
      n: body.n,
      id,
      param: ctx.correlationId,
      current: currentContext.correlationId as string,
      afterAwait: this.context.correlationId!,
      sameObject: this.context.get() === ctx,
      traceId: this.context.trace!.traceId,
      spanId: this.context.trace!.spanId,
      source: ctx.source,
      guarded: ctx.userId,
    };
  }

  @SubscribeMessage('probe')
  probe(): { active: boolean } {
    return { active: this.context.active };
  }

  @SubscribeMessage('stream')
  stream(): Observable<{ id: string | undefined; later: string | undefined }> {
    const id = this.context.correlationId;
    return timer(5).pipe(map(() => ({ id, later: this.context.correlationId })));
  }
}

/** Boots the gateway app; `explicitAdapter: false` leaves the adapter to Nest's default (socket.io). */
async function boot(
  options: ContextModuleOptions<WsContext>,
  ws?: ContextWsOptions,
  explicitAdapter = true,
): Promise<{ app: INestApplication; url: string }> {
  @Module({
    imports: [ContextModule.forRoot(WsContext, options), ...(ws === undefined ? [] : [ContextWsModule.forRoot(ws)])],
    providers: [Gateway, MarkGuard],
  })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
  if (explicitAdapter) app.useWebSocketAdapter(new IoAdapter(app));
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${address.port}` };
}

function connect(url: string, transports: string[], headers: Record<string, string> = {}): Promise<ClientSocket> {
  const socket = io(url, { transports, extraHeaders: headers, forceNew: true, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

async function burst(sockets: ClientSocket[], perSocket: number): Promise<Answer[]> {
  const all: Promise<Answer>[] = [];
  let n = 0;
  for (const socket of sockets) {
    for (let i = 0; i < perSocket; i++) {
      all.push(socket.timeout(10000).emitWithAck('who', { n: n++, wait: (n * 7) % 11 }) as Promise<Answer>);
    }
  }
  return Promise.all(all);
}

function checkEach(answers: Answer[]): void {
  for (const a of answers) {
    expect(a.param).toBe(a.id);
    expect(a.current).toBe(a.id);
    expect(a.afterAwait).toBe(a.id);
    expect(a.sameObject).toBe(true);
    expect(a.source).toBe('ws');
  }
}

describe.each([
  ['websocket', ['websocket']],
  ['polling', ['polling']],
])('WebSockets over %s: a context per message', (_name, transports) => {
  let app: INestApplication;
  let sockets: ClientSocket[] = [];

  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await app?.close();
  });

  it('without any integration: 125 concurrent messages over 5 sockets each get their own context', async () => {
    ({ app } = await boot({}).then((r) => ((sockets = []), r)));
    const url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
    sockets = await Promise.all(Array.from({ length: 5 }, () => connect(url, transports, { 'x-request-id': 'handshake-id' })));
    if (NEST_MAJOR < 12) {
      // NestJS 11 does not apply APP_INTERCEPTOR to gateways: without ContextWsModule there is no
      // context in a handler (the README says to import ContextWsModule; the tests below cover it).
      expect(await sockets[0]!.timeout(5000).emitWithAck('probe', {})).toEqual({ active: false });
      return;
    }
    const answers = await burst(sockets, 25);
    expect(answers).toHaveLength(125);
    checkEach(answers);
    expect(new Set(answers.map((a) => a.id)).size).toBe(125);
    expect(new Set(answers.map((a) => a.traceId)).size).toBe(125);
    expect(answers.every((a) => a.id !== 'handshake-id')).toBe(true);
    expect(answers.every((a) => a.guarded === undefined)).toBe(true); // guards run before the interceptor
  });
});

describe('WebSockets: ContextWsModule enters the context before the pipeline', () => {
  let app: INestApplication;
  const sockets: ClientSocket[] = [];
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await app?.close();
  });

  it.each([['websocket'], ['polling']])('over %s: guards, handler and returned Observables share one fresh context per message (150 messages, 6 sockets)', async (transport) => {
    if (app === undefined) ({ app } = await boot({}, {}, false)); // Nest's default adapter
    const url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
    const batch = await Promise.all(Array.from({ length: 6 }, () => connect(url, [transport], { 'x-request-id': `ignored-${transport}` })));
    const conns = await connections.wait(`ignored-${transport}`, 6);
    for (const c of conns) expect(c.id).toMatch(/^[0-9a-f-]{36}$/); // handleConnection has a context of its own
    sockets.push(...batch);
    const answers = await burst(batch, 25);
    checkEach(answers);
    expect(new Set(answers.map((a) => a.id)).size).toBe(150);
    for (const a of answers) expect(a.guarded).toBe(`guarded:${a.id}`);
    const streams = (await Promise.all(batch.map((s) => s.timeout(5000).emitWithAck('stream', {})))) as Array<{ id: string; later: string }>;
    for (const r of streams) {
      expect(r.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.later).toBe(r.id);
    }
  });
});

describe('WebSockets: ContextWsModule handshake carrier', () => {
  const opened: Array<{ app: INestApplication; sockets: ClientSocket[] }> = [];
  afterAll(async () => {
    for (const o of opened) {
      for (const s of o.sockets) s.disconnect();
      await o.app.close();
    }
  });

  it('handshake: true — every message of a connection continues its x-request-id and trace, with its own span', async () => {
    const { app, url } = await boot({}, { handshake: true });
    const traceIds = ['4bf92f3577b34da6a3ce929d0e0e4736', '0af7651916cd43dd8448eb211c80319c', 'a'.repeat(31) + 'b'];
    const sockets = await Promise.all(
      traceIds.map((t, i) => connect(url, ['websocket'], { 'x-request-id': `conn-${i}`, traceparent: `00-${t}-00f067aa0ba902b7-01` })),
    );
    opened.push({ app, sockets });
    const answers: Answer[][] = await Promise.all(
      sockets.map((s) => Promise.all(Array.from({ length: 40 }, (_, i) => s.timeout(10000).emitWithAck('who', { n: i, wait: i % 4 }) as Promise<Answer>))),
    );
    for (let i = 0; i < traceIds.length; i++) expect((await connections.wait(`conn-${i}`))[0]!.id).toBe(`conn-${i}`);
    answers.forEach((list, i) => {
      checkEach(list);
      for (const a of list) {
        expect(a.id).toBe(`conn-${i}`);
        expect(a.traceId).toBe(traceIds[i]);
      }
      expect(new Set(list.map((a) => a.spanId)).size).toBe(list.length);
    });
  });

  it('a handshake predicate decides per connection; untrusted ones get fresh ids', async () => {
    const { app, url } = await boot({}, { handshake: (req) => req.headers['x-mesh'] === 'yes' });
    const trusted = await connect(url, ['websocket'], { 'x-request-id': 'mesh-1', 'x-mesh': 'yes' });
    const untrusted = await connect(url, ['websocket'], { 'x-request-id': 'outsider-1' });
    opened.push({ app, sockets: [trusted, untrusted] });
    const a = (await trusted.emitWithAck('who', { n: 1, wait: 0 })) as Answer;
    const b = (await untrusted.emitWithAck('who', { n: 2, wait: 0 })) as Answer;
    expect(a.id).toBe('mesh-1');
    expect(b.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("the app's trustInbound predicate is evaluated on the handshake request", async () => {
    const { app, url } = await boot({ trustInbound: (req) => req.headers['x-internal'] === '1' }, { handshake: true });
    const inside = await connect(url, ['websocket'], { 'x-request-id': 'inside-1', 'x-internal': '1' });
    const outside = await connect(url, ['websocket'], { 'x-request-id': 'outside-1' });
    opened.push({ app, sockets: [inside, outside] });
    expect(((await inside.emitWithAck('who', { n: 1, wait: 0 })) as Answer).id).toBe('inside-1');
    expect(((await outside.emitWithAck('who', { n: 2, wait: 0 })) as Answer).id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('an invalid handshake id is replaced by a fresh one', async () => {
    const { app, url } = await boot({}, { handshake: true });
    const socket = await connect(url, ['websocket'], { 'x-request-id': 'bad id!', traceparent: 'garbage' });
    opened.push({ app, sockets: [socket] });
    const a = (await socket.emitWithAck('who', { n: 1, wait: 0 })) as Answer;
    const b = (await socket.emitWithAck('who', { n: 2, wait: 0 })) as Answer;
    expect(a.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.id).not.toBe(b.id);
  });
});
