import 'reflect-metadata';
import type { INestApplication, INestMicroservice } from '@nestjs/common';
import { ApplicationConfig, NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions, type Server } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { isObservable, lastValueFrom } from 'rxjs';
import { ContextModule, ContextService } from '../../../src/index.js';
import { ContextHost } from '../../../src/runtime/context-host.js';
import { contextProcessor, JOB_CONTEXT_OPTION, readJobContext } from '../../../src/integrations/bullmq/index.js';
import { ContextWsModule } from '../../../src/integrations/websockets/index.js';
import { freePort } from '../../utils/brokers.js';
import { TransportContext } from '../../transports/fixtures/harness.js';
import { FRESH, hostilePattern, nextKey, received, receiverModule } from './fixtures.js';

/**
 * What the hostile-metadata properties found, one focused case each: in-process objects whose
 * getters throw, revoked Proxies and frozen objects broke the WebSocket extractor, BullMQ jobs and
 * the message handler wrapper (a throw before the handler ran, or later when the trace was read).
 */

const boom = (): never => {
  throw new Error('hostile getter');
};

function revoked(): object {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
}

describe('hostile in-process metadata: regressions', () => {
  let app: INestApplication;
  let host: ContextHost;
  let contexts: ContextService<TransportContext>;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [ContextModule.forRoot(TransportContext), ContextWsModule.forRoot({ handshake: true })],
    }).compile();
    app = moduleRef.createNestApplication(undefined as never, { logger: false });
    await app.init();
    host = app.get(ContextHost);
    contexts = app.get<ContextService<TransportContext>>(ContextService);
  });

  afterAll(() => app?.close());

  describe('WebSocket handshake (handshake: true)', () => {
    it('a socket whose request getter throws, or whose request is a revoked Proxy, gets a fresh context (the extractor used to throw)', () => {
      const throwing = Object.defineProperty({ id: 's1', handshake: { headers: { 'x-request-id': 'hs-1' } } }, 'request', { get: boom });
      const revokedRequest = { id: 's2', handshake: { headers: { 'x-request-id': 'hs-2' } }, request: revoked() };
      for (const socket of [throwing, revokedRequest, revoked()]) {
        expect(host.forMessage('ws', socket, {}).correlationId).toMatch(FRESH);
      }
    });

    it('the adapter wrapper runs the handler for such a socket (it used to throw before the handler)', () => {
      const bound: Array<{ callback: (...args: unknown[]) => unknown }> = [];
      const adapter = {
        bindMessageHandlers: (_client: unknown, handlers: typeof bound, _transform: unknown) => bound.push(...handlers),
        create: () => ({}),
        close: () => undefined,
        dispose: () => undefined,
      };
      app.useWebSocketAdapter(adapter as never);
      const wrapped = app.get(ApplicationConfig).getIoAdapter() as unknown as typeof adapter;
      const socket = Object.defineProperty({ id: 's3' }, 'handshake', { get: boom, enumerable: true });
      wrapped.bindMessageHandlers(socket, [{ callback: () => contexts.correlationId }], (x: unknown) => x);
      expect(bound[0]!.callback({})).toMatch(FRESH);
    });

    it('a header getter that throws never reaches the context: the valid id is kept and the trace is readable (it threw on first trace read)', () => {
      const headers = Object.defineProperty({ 'x-request-id': 'hs-ok' }, 'traceparent', { get: boom, enumerable: true });
      const record = host.forMessage('ws', { id: 's4', handshake: { headers } }, {});
      expect(record.correlationId).toBe('hs-ok');
      expect(record.trace.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(record.trace.parentId).toBeUndefined();
    });

    it('inherited header values are not read (own headers only, as Node has them)', () => {
      const headers = Object.create({ 'x-request-id': 'inherited-id', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }) as object;
      const record = host.forMessage('ws', { id: 's5', handshake: { headers } }, {});
      expect(record.correlationId).toMatch(FRESH);
      expect(record.trace.traceId).not.toBe('0af7651916cd43dd8448eb211c80319c');
    });
  });

  describe('BullMQ jobs', () => {
    const seenIds: Array<string | undefined> = [];
    const processor = contextProcessor((job: unknown) => {
      seenIds.push(contexts.correlationId);
      return job;
    });
    const run = (job: unknown): { returned: unknown; id: string | undefined } => {
      seenIds.length = 0;
      const returned = processor(job as never);
      return { returned, id: seenIds[0] };
    };

    it('a frozen job runs in its metadata context (anchoring the record on it used to throw before the processor ran)', () => {
      const job = Object.freeze({ id: 'j1', data: {}, opts: { [JOB_CONTEXT_OPTION]: { 'x-request-id': 'frozen-job' } } });
      expect(run(job)).toEqual({ returned: job, id: 'frozen-job' });
    });

    it('options or metadata that cannot be read give a fresh context, never a throw; readJobContext() returns undefined', () => {
      const jobs = [
        Object.defineProperty({ id: 'j2', data: {} }, 'opts', { get: boom, enumerable: true }),
        { id: 'j3', data: {}, opts: Object.defineProperty({}, JOB_CONTEXT_OPTION, { get: boom, enumerable: true }) },
        { id: 'j4', data: {}, opts: { [JOB_CONTEXT_OPTION]: Object.defineProperty({}, 'x-request-id', { get: boom, enumerable: true }) } },
        { id: 'j5', data: {}, opts: { [JOB_CONTEXT_OPTION]: revoked() } },
        { id: 'j6', data: {}, opts: revoked() },
      ];
      for (const job of jobs as Array<{ opts?: unknown }>) {
        expect(() => readJobContext(job)).not.toThrow();
        expect(readJobContext(job)).toBeUndefined();
        const { returned, id } = run(job);
        expect(returned).toBe(job);
        expect(id).toMatch(FRESH);
      }
    });
  });

  describe('message handler wrapper (fallback envelope)', () => {
    let micro: INestMicroservice;
    const prefix = `hz-regress-${process.pid}`;

    beforeAll(async () => {
      micro = await NestFactory.createMicroservice<MicroserviceOptions>(receiverModule(prefix), {
        transport: Transport.TCP,
        options: { host: '127.0.0.1', port: await freePort() },
        logger: false,
      });
      await micro.init();
    });

    afterAll(() => micro?.close());

    async function deliver(data: unknown, transport: unknown): Promise<void> {
      const handler = (micro as unknown as { serverInstance: Server }).serverInstance.getHandlerByPattern(hostilePattern(prefix));
      const result: unknown = await handler!(data, transport);
      if (isObservable(result)) await lastValueFrom(result, { defaultValue: undefined });
    }

    it('an envelope whose headers getter throws is unwrapped and the handler runs in a fresh context (the wrapper used to throw)', async () => {
      const key = nextKey(prefix);
      const envelope = Object.defineProperty({ data: { key } }, '__nestjs_context__', { get: boom, enumerable: true });
      await deliver(envelope, {});
      const seen = await received.waitFor(key, 2000);
      expect(seen.payload).toEqual({ key });
      expect(seen.correlationId).toMatch(FRESH);
    });

    it("a payload whose 'in' checks throw is no request-scoped host: the handler gets it as it is (the wrapper used to throw)", async () => {
      const key = nextKey(prefix);
      await deliver(new Proxy({ key }, { has: boom }), {});
      const seen = await received.waitFor(key, 2000);
      expect(seen.correlationId).toMatch(FRESH);
    });
  });
});
