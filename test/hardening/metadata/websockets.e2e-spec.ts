import 'reflect-metadata';
import { Module, type INestApplication } from '@nestjs/common';
import { ConnectedSocket, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import fc from 'fast-check';
import { io } from 'socket.io-client';
import type { Socket } from 'socket.io';
import { ContextModule, ContextService, currentContext } from '../../../src/index.js';
import { ContextWsModule } from '../../../src/integrations/websockets/index.js';
import { serverContextOptions, TransportContext } from '../../transports/fixtures/harness.js';
import {
  assertHostile,
  expectIdFrom,
  headerName,
  hostileString,
  ID_NAMES,
  runs,
} from './fixtures.js';

/**
 * WebSocket (socket.io, ContextWsModule with `handshake: true`): real connections whose handshake
 * carries hostile headers — any byte Node's HTTP client sends (tab, printable ASCII, 0x80–0xFF),
 * repeated headers, `__proto__`-named headers, values over 8 KB (Node's server caps a request's
 * headers at 16 KB, so 100 KB values are in-process only). Every message of the connection must run
 * in a context whose id is the handshake's first valid one, or a fresh one.
 */

interface Answer {
  id: string | undefined;
  current: string | undefined;
  traceId: string | undefined;
  tenant: unknown;
  /** The id headers as the server's socket holds them (Node joins a repeated header with ', '). */
  headers: Record<string, unknown>;
}

@WebSocketGateway()
class HostileGateway {
  constructor(private readonly context: ContextService<TransportContext>) {}

  @SubscribeMessage('who')
  who(@ConnectedSocket() client: Socket): Answer {
    const headers: Record<string, unknown> = {};
    for (const name of ID_NAMES) {
      if (Object.prototype.hasOwnProperty.call(client.handshake.headers, name)) headers[name] = client.handshake.headers[name];
    }
    return {
      id: this.context.correlationId,
      current: (currentContext as unknown as TransportContext).correlationId,
      traceId: this.context.trace?.traceId,
      tenant: this.context.get().tenant,
      headers,
    };
  }
}

@Module({
  imports: [ContextModule.forRoot(TransportContext, serverContextOptions), ContextWsModule.forRoot({ handshake: true })],
  providers: [HostileGateway],
})
class HostileWsModule {}

/** Header names Node's client accepts (tokens), lower-cased as the server sees them. */
const wsName = headerName.filter((name) => /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name));
/** Header values Node's client accepts: tab, printable ASCII and 0x80–0xFF; at most 9 KB. */
const wsValue = hostileString.map((value) => value.replace(/[^\t\x20-\x7e\x80-\xff]/g, '').slice(0, 9000));
/** Names Node's client or server handle themselves (they would break the handshake, not test the library). */
const RESERVED = new Set(['host', 'connection', 'upgrade', 'content-length', 'transfer-encoding', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions']);

/** Handshake headers: at most 12 KB in all (Node's server answers 431 above 16 KB). */
const handshakeHeaders: fc.Arbitrary<Array<[string, string[]]>> = fc
  .array(fc.tuple(wsName, fc.array(wsValue, { minLength: 1, maxLength: 3 })), { maxLength: 6 })
  .map((entries) => {
    const merged = new Map<string, string[]>();
    let bytes = 0;
    for (const [name, values] of entries) {
      const key = name.toLowerCase();
      if (RESERVED.has(key)) continue;
      const size = values.reduce((n, v) => n + key.length + v.length + 4, 0);
      if (bytes + size > 12_000) continue;
      bytes += size;
      merged.set(key, [...(merged.get(key) ?? []), ...values]);
    }
    return [...merged.entries()];
  });

describe('hostile handshake headers over WebSocket (socket.io, handshake: true)', () => {
  let app: INestApplication;
  let url = '';
  const numRuns = runs(50);

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [HostileWsModule] }).compile();
    app = moduleRef.createNestApplication(new ExpressAdapter(), { logger: false });
    app.useWebSocketAdapter(new IoAdapter(app));
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
  });

  afterAll(() => app?.close());

  async function ask(headers: Array<[string, string[]]>): Promise<Answer> {
    const extraHeaders = Object.fromEntries(headers.map(([name, values]) => [name, values.length === 1 ? values[0] : values]));
    const socket = io(url, { transports: ['websocket'], extraHeaders: extraHeaders as Record<string, string>, forceNew: true, reconnection: false });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      });
      return (await socket.timeout(5000).emitWithAck('who', {})) as Answer;
    } finally {
      socket.disconnect();
    }
  }

  it(`never crashes, pollutes or echoes an invalid id; the first valid id wins; every message is answered (${numRuns} runs)`, async () => {
    await assertHostile(handshakeHeaders, async (headers) => {
      const answer = await ask(headers);
      const sent = new Set(headers.flatMap(([name, values]) => [name, ...values]));
      expect(answer.current).toBe(answer.id);
      expect(answer.traceId).toMatch(/^[0-9a-f]{32}$/);
      if (answer.tenant !== undefined) expect(typeof answer.tenant).toBe('string');
      // The library reads the headers as Node hands them over: a repeated one joined with ', '.
      for (const name of ID_NAMES) {
        const values = headers.find(([key]) => key === name)?.[1];
        if (values === undefined) expect(answer.headers[name]).toBeUndefined();
        else expect(answer.headers[name]).toBe(values.map((v) => v.replace(/^[\t ]+|[\t ]+$/g, '')).join(', '));
      }
      // As for HTTP, a handshake header is read whole (no 8192 cap: Node bounds a request's headers at 16 KB).
      const found: Record<string, string[]> = {};
      for (const name of ID_NAMES) if (typeof answer.headers[name] === 'string' && answer.headers[name] !== '') found[name] = [answer.headers[name] as string];
      expectIdFrom(answer.id, found, sent);
    }, numRuns);
  }, 60_000);
});
