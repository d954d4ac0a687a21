import 'reflect-metadata';
import { Injectable, Module, UseGuards, type CanActivate, type INestApplication } from '@nestjs/common';
import { MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { ExpressAdapter } from '@nestjs/platform-express';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import { SpanKind, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { createLogFields } from '../../src/integrations/logger/index.js';
import { ContextOpenTelemetryModule } from '../../src/integrations/opentelemetry/index.js';
import { ContextWsModule } from '../../src/integrations/websockets/index.js';
import { bootApp } from '../utils/platforms.js';
import { OUTSIDE, startOtel, type OtelSdk } from './otel-sdk.js';

class WsContext {
  correlationId: string;
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

const fields = createLogFields();
type Line = Record<string, unknown>;

/** The lines the guard wrote, by message number (the guard runs inside the message's context, before the handler). */
const guardLines = new Map<number, Line>();

@Injectable()
class LogGuard implements CanActivate {
  canActivate(context: { switchToWs(): { getData<T>(): T } }): boolean {
    guardLines.set(context.switchToWs().getData<{ n: number }>().n, { ...fields.current() });
    return true;
  }
}

interface Answer {
  correlationId: string;
  traceId: string;
  spanId: string;
  parentId: string | undefined;
  guardLine: Line | undefined;
  line: Line;
  innerLine: Line;
  innerSpanId: string;
}

@WebSocketGateway()
@UseGuards(LogGuard)
class Gateway {
  constructor(private readonly context: ContextService<WsContext>) {}

  @SubscribeMessage('who')
  async who(@MessageBody() body: { n: number }): Promise<Answer> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    const { traceId, spanId, parentId } = this.context.trace!;
    const inner = trace.getTracer('test').startActiveSpan('handler work', (span) => {
      span.end();
      return { line: { ...fields.current() }, spanId: span.spanContext().spanId };
    });
    return {
      correlationId: this.context.correlationId ?? '',
      traceId,
      spanId,
      parentId,
      guardLine: guardLines.get(body.n),
      line: { ...fields.current() },
      innerLine: inner.line,
      innerSpanId: inner.spanId,
    };
  }
}

/**
 * What a socket.io instrumentation does (OTel's contrib one does the same for `socket.on`
 * listeners): each received message is handled inside a span of its own, active while the
 * handler runs. Here around the handlers Nest binds through the adapter.
 */
class InstrumentedIoAdapter extends IoAdapter {
  override bindMessageHandlers(socket: never, handlers: { message: string; callback: (...args: unknown[]) => unknown }[], transform: never): void {
    const traced = handlers.map((handler) => ({
      ...handler,
      callback: (...args: unknown[]) =>
        trace.getTracer('socket.io-like').startActiveSpan(`/ ${handler.message} receive`, { kind: SpanKind.CONSUMER }, (span) => {
          const result = handler.callback(...args);
          if (result instanceof Promise) return result.finally(() => span.end());
          span.end();
          return result;
        }),
    }));
    super.bindMessageHandlers(socket, traced as never, transform);
  }
}

function connect(url: string, transport: string, headers: Record<string, string> = {}): Promise<ClientSocket> {
  const socket = io(url, { transports: [transport], extraHeaders: { ...headers, [OUTSIDE]: '1' }, forceNew: true, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

async function boot(instrumented: boolean): Promise<{ app: INestApplication; url: string }> {
  @Module({
    imports: [ContextModule.forRoot(WsContext), ContextWsModule.forRoot({ handshake: true }), ContextOpenTelemetryModule.forRoot()],
    providers: [Gateway, LogGuard],
  })
  class AppModule {}
  const app = await bootApp(AppModule, () => new ExpressAdapter(), (a) => a.useWebSocketAdapter(instrumented ? new InstrumentedIoAdapter(a) : new IoAdapter(a)));
  await app.listen(0, '127.0.0.1');
  return { app, url: (await app.getUrl()).replace('[::1]', '127.0.0.1') };
}

const HANDSHAKE_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const HANDSHAKE = { 'x-request-id': 'ws-conn-1', traceparent: `00-${HANDSHAKE_TRACE}-00f067aa0ba902b7-01` };

describe('OpenTelemetry SDK + nestjs-context in a WebSocket gateway (socket.io, ContextWsModule)', () => {
  let otel: OtelSdk;
  const opened: { app: INestApplication; sockets: ClientSocket[] }[] = [];
  let n = 0;

  beforeAll(() => {
    otel = startOtel();
  });
  afterAll(async () => {
    for (const { app, sockets } of opened) {
      for (const socket of sockets) socket.disconnect();
      await app.close();
    }
    await otel.shutdown();
  });
  beforeEach(() => otel.exporter.reset());

  async function ask(socket: ClientSocket): Promise<Answer> {
    return (await socket.timeout(10000).emitWithAck('who', { n: ++n })) as Answer;
  }

  it("a message handled inside a span active where the adapter delivers it (a socket.io instrumentation's) adopts that span; guard and handler lines show it", async () => {
    const { app, url } = await boot(true);
    const socket = await connect(url, 'websocket', HANDSHAKE);
    opened.push({ app, sockets: [socket] });
    const answers = [await ask(socket), await ask(socket)];
    const spans = await otel.until((s) => s.filter((span) => span.kind === SpanKind.CONSUMER).length >= 2);
    const received = spans.filter((span) => span.kind === SpanKind.CONSUMER);
    expect(received.map((span) => span.name)).toEqual(['/ who receive', '/ who receive']);
    answers.forEach((answer, i) => {
      const span = received[i] as ReadableSpan;
      // the record is the message's span (OTel's trace wins over the handshake's traceparent) …
      expect([answer.traceId, answer.spanId, answer.parentId]).toEqual([span.spanContext().traceId, span.spanContext().spanId, undefined]);
      expect(answer.traceId).not.toBe(HANDSHAKE_TRACE);
      // … and the correlation id still comes from the trusted handshake
      expect(answer.correlationId).toBe('ws-conn-1');
      const ids = { correlationId: 'ws-conn-1', traceId: span.spanContext().traceId, spanId: span.spanContext().spanId };
      expect(answer.guardLine).toEqual(ids);
      expect(answer.line).toEqual(ids);
      // a line inside a span the handler starts shows that span, a child of the message's span
      const inner = spans.find((s) => s.spanContext().spanId === answer.innerSpanId) as ReadableSpan;
      expect(inner.parentSpanContext?.spanId).toBe(span.spanContext().spanId);
      expect(answer.innerLine).toEqual({ ...ids, spanId: answer.innerSpanId });
    });
    expect(answers[0]!.spanId).not.toBe(answers[1]!.spanId);
  });

  it('over a WebSocket without such an instrumentation there is no span at the entry: the handshake\'s trace, as without OTel', async () => {
    const { app, url } = await boot(false);
    const socket = await connect(url, 'websocket', HANDSHAKE);
    opened.push({ app, sockets: [socket] });
    const answer = await ask(socket);
    expect(answer.traceId).toBe(HANDSHAKE_TRACE);
    expect(answer.parentId).toBe('00f067aa0ba902b7');
    const ids = { correlationId: 'ws-conn-1', traceId: HANDSHAKE_TRACE, spanId: answer.spanId };
    expect(answer.guardLine).toEqual(ids);
    expect(answer.line).toEqual(ids);
    expect(otel.spans().map((s) => s.spanContext().spanId)).not.toContain(answer.spanId);
  });

  it("over HTTP long-polling a message arrives inside the server span of the request that carried it (OTel's http instrumentation): the record adopts it", async () => {
    const { app, url } = await boot(false);
    const socket = await connect(url, 'polling', HANDSHAKE);
    opened.push({ app, sockets: [socket] });
    otel.exporter.reset();
    const answer = await ask(socket);
    const spans = await otel.until((s) => s.some((span) => span.spanContext().spanId === answer.spanId));
    const carrier = spans.find((span) => span.spanContext().spanId === answer.spanId) as ReadableSpan;
    expect(carrier.kind).toBe(SpanKind.SERVER);
    expect(answer.traceId).toBe(carrier.spanContext().traceId);
    expect(answer.correlationId).toBe('ws-conn-1');
    expect(answer.line).toEqual({ correlationId: 'ws-conn-1', traceId: answer.traceId, spanId: answer.spanId });
  });
});
