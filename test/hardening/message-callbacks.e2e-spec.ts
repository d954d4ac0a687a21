import 'reflect-metadata';
import { connect } from 'node:net';
import { Controller, Injectable, Module, type INestApplicationContext, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { MessagePattern, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { ContextModule, ContextService, WithContext, currentContext, type ContextModuleOptions } from 'nestjs-context';
import { ContextEventEmitterModule } from 'nestjs-context/event-emitter';
import { ContextMicroservicesModule } from 'nestjs-context/microservices';
import { ContextScheduleModule } from 'nestjs-context/schedule';
import { MyContext } from '../fixtures/app-context.js';
import { freePort } from '../utils/brokers.js';
import { CaptureLogger } from '../utils/capture-logger.js';
import { DEFAULT_ID } from '../utils/ids.js';
import { throwingGenerate, throwingValidate } from './failing-callbacks.js';

const UUID = DEFAULT_ID;


describe('a failing option callback on a message gives a fresh context, never a crash (TCP)', () => {
  const seen: (string | undefined)[] = [];

  @Controller()
  class EchoController {
    @MessagePattern('hardening.echo')
    echo(n: number): { n: number; id: string } {
      seen.push(currentContext.correlationId as string);
      return { n, id: currentContext.correlationId as string };
    }
  }

  let app: INestMicroservice | undefined;
  let port = 0;
  const logger = new CaptureLogger();

  async function boot(options: ContextModuleOptions<MyContext>): Promise<void> {
    @Module({ imports: [ContextModule.forRoot(MyContext, options), ContextMicroservicesModule.forRoot()], controllers: [EchoController] })
    class EchoModule {}
    port = await freePort();
    app = await NestFactory.createMicroservice<MicroserviceOptions>(EchoModule, {
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port },
      logger,
    });
    await app.listen();
  }

  /** Sends one request frame as a non-Nest producer would, the headers in the fallback envelope; resolves with the reply. */
  function send(headers: Record<string, string>, n: number): Promise<{ response?: { n: number; id: string }; err?: unknown }> {
    const packet = JSON.stringify({ pattern: 'hardening.echo', id: `m${n}`, data: { __nestjs_context__: headers, data: n } });
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => socket.write(`${packet.length}#${packet}`));
      let buffer = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        buffer += chunk;
        const hash = buffer.indexOf('#');
        const length = Number(buffer.slice(0, hash));
        if (hash > 0 && buffer.length >= hash + 1 + length) {
          socket.end();
          resolve(JSON.parse(buffer.slice(hash + 1, hash + 1 + length)) as { response?: { n: number; id: string } });
        }
      });
      socket.on('error', reject);
    });
  }

  afterEach(async () => {
    await app?.close();
    app = undefined;
    seen.length = 0;
    logger.errors.length = 0;
  });

  it('validate throws on the inbound id: the handler runs with a fresh id, the failure is logged once, the next message is served', async () => {
    await boot(throwingValidate);
    const reply = await send({ 'x-request-id': '%' }, 1);
    expect(reply.response?.n).toBe(1);
    expect(reply.response?.id).toMatch(UUID);
    expect(logger.errors).toHaveLength(1);
    expect(logger.errors[0]).toMatch(/correlationId.validate callback threw URIError/);
    expect(logger.errors[0]).toMatch(/\n\s+at /);
    const next = await send({ 'x-request-id': 'next-2' }, 2);
    expect(next.response).toEqual({ n: 2, id: 'next-2' });
  });

  it('generate throws: every message still answers, with a default id', async () => {
    await boot(throwingGenerate);
    const replies = await Promise.all([1, 2, 3].map((n) => send({}, n)));
    expect(replies.map((r) => r.response?.n)).toEqual([1, 2, 3]);
    for (const r of replies) expect(r.response?.id).toMatch(UUID);
    expect(logger.errors).toHaveLength(3);
    expect((await send({ 'x-request-id': 'given-4' }, 4)).response).toEqual({ n: 4, id: 'given-4' });
  });
});

describe('a failing generator in schedule, events and @WithContext gives a fresh context, never a crash', () => {
  const runs: { key: string; id: string }[] = [];

  @Injectable()
  class Work {
    @Interval('hardening-interval', 20)
    tick(): void {
      runs.push({ key: 'interval', id: currentContext.correlationId as string });
    }

    @OnEvent('hardening.event')
    onEvent(): void {
      runs.push({ key: 'event', id: currentContext.correlationId as string });
    }

    @WithContext()
    manual(): string {
      return currentContext.correlationId as string;
    }
  }

  @Module({
    imports: [
      ContextModule.forRoot(MyContext, throwingGenerate),
      ScheduleModule.forRoot(),
      ContextScheduleModule.forRoot(),
      EventEmitterModule.forRoot(),
      ContextEventEmitterModule.forRoot({ mode: 'fresh' }),
    ],
    providers: [Work],
  })
  class WorkModule {}

  let app: INestApplicationContext;
  const logger = new CaptureLogger();
  beforeAll(async () => {
    app = await NestFactory.createApplicationContext(WorkModule, { logger });
    await app.init();
  });
  afterAll(() => app.close());

  it('each run gets a default id and the failure is logged', async () => {
    await new Promise((resolve) => setTimeout(resolve, 80));
    app.get(EventEmitter2).emit('hardening.event');
    const manual = app.get(Work).manual();
    expect(manual).toMatch(UUID);
    const service = app.get(ContextService);
    expect(service.run(() => service.correlationId)).toMatch(UUID);
    const keys = new Set(runs.map((r) => r.key));
    expect(keys).toEqual(new Set(['interval', 'event']));
    for (const run of runs) expect(run.id).toMatch(UUID);
    expect(logger.errors.length).toBeGreaterThanOrEqual(runs.length + 2);
    expect(logger.errors.every((e) => /correlationId.generate callback threw Error: id service down/.test(e))).toBe(true);
  });
});

describe('ContextService.run() and a validator that throws', () => {
  it('run() with an id the validator cannot check (it throws) goes on with a fresh id, reported', async () => {
    @Module({ imports: [ContextModule.forRoot(MyContext, throwingValidate)] })
    class RunModule {}
    const logged = new CaptureLogger();
    const runApp = await NestFactory.createApplicationContext(RunModule, { logger: logged });
    try {
      const service = runApp.get(ContextService);
      const id = service.run(() => service.correlationId, { correlationId: '%' });
      expect(id).toMatch(UUID);
      expect(logged.errors.some((e) => /correlationId.validate callback threw URIError/.test(e))).toBe(true);
      expect(service.run(() => service.correlationId, { correlationId: 'ok-1' })).toBe('ok-1');
    } finally {
      await runApp.close();
    }
  });
});
