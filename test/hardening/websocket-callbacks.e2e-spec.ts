/**
 * Issue #12, deliverable 1, on WebSocket gateways (socket.io over a real socket): an option callback
 * that fails on a handshake or a message never takes the process down. Every message (and every
 * connection, whose `handleConnection` gets a context too) that hits the failure is handled in a fresh
 * context with a valid default id, the failure is logged once per entry with its stack through Nest's
 * logger, and the next message is answered normally.
 */
import 'reflect-metadata';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { Module, type INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { SubscribeMessage, WebSocketGateway, type OnGatewayConnection } from '@nestjs/websockets';
import { Test } from '@nestjs/testing';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import { ContextModule, ContextService, currentContext, type ContextModuleOptions } from 'nestjs-context';
import { ContextWsModule, type ContextWsOptions } from 'nestjs-context/websockets';
import { MyContext } from '../fixtures/app-context.js';
import { CaptureLogger } from '../utils/capture-logger.js';
import { DEFAULT_ID } from '../utils/ids.js';
import { throwingGenerate, throwingValidate } from './failing-callbacks.js';

/** What a handler answered: its id through `currentContext` and through the app's `ContextService`. */
interface Answer {
  current: string;
  service: string | undefined;
}

/** The installed NestJS major (11 or 12): NestJS 11 applies no global interceptor to gateways. */
const NEST_MAJOR = Number((createRequire(import.meta.url)('@nestjs/core/package.json') as { version: string }).version.split('.')[0]);

const connections: (string | undefined)[] = [];

@WebSocketGateway()
class IdGateway implements OnGatewayConnection {
  constructor(private readonly context: ContextService<MyContext>) {}

  handleConnection(): void {
    connections.push(this.context.getOrUndefined()?.correlationId);
  }

  @SubscribeMessage('id')
  id(): Answer {
    return { current: currentContext.correlationId as string, service: this.context.correlationId };
  }
}

const throwingTrust: ContextModuleOptions<MyContext> = {
  trustInbound: (req: IncomingMessage) => (req.headers['x-mesh-secret'] as string).startsWith('s3cret'),
};

describe('a failing option callback on a WebSocket handshake or message gives a fresh context, never a crash', () => {
  const logger = new CaptureLogger();
  let app: INestApplication | undefined;
  let url = '';
  const sockets: ClientSocket[] = [];

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.disconnect();
    await app?.close();
    app = undefined;
    logger.errors.length = 0;
    connections.length = 0;
  });

  /** Boots the gateway app; `ws` undefined leaves ContextWsModule out (the interceptor opens the context). */
  async function boot(options: ContextModuleOptions<MyContext>, ws?: ContextWsOptions): Promise<void> {
    @Module({ imports: [ContextModule.forRoot(MyContext, options), ...(ws === undefined ? [] : [ContextWsModule.forRoot(ws)])], providers: [IdGateway] })
    class GatewayModule {}
    const moduleRef = await Test.createTestingModule({ imports: [GatewayModule] }).compile();
    app = moduleRef.createNestApplication(new ExpressAdapter(), { logger });
    app.useWebSocketAdapter(new IoAdapter(app));
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer() as { address(): { port: number } }).address().port}`;
  }

  async function connect(headers: Record<string, string> = {}): Promise<ClientSocket> {
    const before = connections.length;
    const socket = io(url, { transports: ['websocket'], extraHeaders: headers, forceNew: true, reconnection: false });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    // The server runs handleConnection once the handshake is accepted (usually before the client hears of it).
    for (let i = 0; i < 100 && connections.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    return socket;
  }

  const ask = async (socket: ClientSocket): Promise<Answer> => {
    const answer = (await socket.timeout(5000).emitWithAck('id', {})) as Answer;
    expect(answer.service).toBe(answer.current);
    return answer;
  };

  /** Every logged error is the library's report of `option`'s failure, with the cause and its stack. */
  function expectReports(count: number, option: string, cause: RegExp): void {
    expect(logger.errors).toHaveLength(count);
    for (const error of logger.errors) {
      expect(error).toMatch(new RegExp(`ContextModule: your ${option.replace(/[.()]/g, '\\$&')} callback`));
      expect(error).toMatch(cause);
      expect(error).toMatch(/\n\s+at /);
    }
  }

  it('trustInbound throws on the handshake request: the connection and each message get a fresh id, each entry logged once; a trusted handshake is served next', async () => {
    await boot(throwingTrust, { handshake: true });
    const failing = await connect({ 'x-request-id': 'from-mesh' });
    expect(connections).toEqual([expect.stringMatching(DEFAULT_ID)]);
    expectReports(1, 'trustInbound', /TypeError/);
    const [a, b] = [await ask(failing), await ask(failing)];
    for (const answer of [a, b]) expect(answer.current).toMatch(DEFAULT_ID);
    expect(a.current).not.toBe(b.current);
    expectReports(3, 'trustInbound', /TypeError/);

    const trusted = await connect({ 'x-request-id': 'mesh-1', 'x-mesh-secret': 's3cret-ok' });
    expect((await ask(trusted)).current).toBe('mesh-1');
    expect(await ask(failing)).toMatchObject({ current: expect.stringMatching(DEFAULT_ID) }); // the failing connection still answers
    expectReports(4, 'trustInbound', /TypeError/);
  });

  it('validate throws on the handshake id: fresh ids, each entry logged once; a valid id on the next connection is used', async () => {
    await boot(throwingValidate, { handshake: true });
    const failing = await connect({ 'x-request-id': '%' });
    const answer = await ask(failing);
    expect(answer.current).toMatch(DEFAULT_ID);
    expectReports(2, 'correlationId.validate', /URIError/); // handleConnection's entry and the message's
    const next = await connect({ 'x-request-id': 'next-1' });
    expect((await ask(next)).current).toBe('next-1');
    expect(await ask(failing)).toMatchObject({ current: expect.stringMatching(DEFAULT_ID) });
    expectReports(3, 'correlationId.validate', /URIError/);
  });

  it.each<[string, ContextWsOptions | undefined]>([
    ['with ContextWsModule (context entered before the pipeline)', {}],
    ['with ContextWsModule and handshake: true (no id in the handshake)', { handshake: true }],
    // On NestJS 11 a gateway gets no context without ContextWsModule (no global interceptor): nothing to generate.
    ...(NEST_MAJOR >= 12 ? [['without ContextWsModule (the interceptor opens the context)', undefined] as [string, undefined]] : []),
  ])('generate throws, %s: every message is answered with a default id, each failure logged once', async (_label, ws) => {
    await boot(throwingGenerate, ws);
    const socket = await connect();
    const answers = await Promise.all([1, 2, 3].map(() => ask(socket)));
    for (const answer of answers) expect(answer.current).toMatch(DEFAULT_ID);
    expect(new Set(answers.map((a) => a.current)).size).toBe(3);
    // Without the integration handleConnection has no context (and nothing to generate).
    const entries = ws === undefined ? 3 : 4;
    expect(connections).toHaveLength(1);
    expectReports(entries, 'correlationId.generate', /Error: id service down/);
    if (ws?.handshake === true) {
      const given = await connect({ 'x-request-id': 'given-1' });
      expect((await ask(given)).current).toBe('given-1'); // an inbound id needs no generator
      expectReports(entries, 'correlationId.generate', /Error: id service down/);
    }
  });

  it("ContextWsModule's own handshake predicate throws: each entry gets a fresh id and the failure is logged once with its stack", async () => {
    await boot({}, { handshake: (req: IncomingMessage) => (req.headers['x-mesh-secret'] as string).startsWith('s3cret') });
    const failing = await connect({ 'x-request-id': 'from-mesh' });
    const answer = await ask(failing);
    expect(answer.current).toMatch(DEFAULT_ID);
    expectReports(2, 'ContextWsModule.forRoot() handshake', /TypeError/);
    const trusted = await connect({ 'x-request-id': 'mesh-1', 'x-mesh-secret': 's3cret-ok' });
    expect((await ask(trusted)).current).toBe('mesh-1');
    expectReports(2, 'ContextWsModule.forRoot() handshake', /TypeError/);
  });
});
