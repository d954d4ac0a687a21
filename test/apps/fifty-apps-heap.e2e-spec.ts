/**
 * One runtime per app (issue #13, deliverable 6): 50 apps created and closed in one process leave
 * nothing behind — no wrapper on the user's classes, no registry entry, no process listener — and
 * the heap returns to its baseline. Each app is a full one: HTTP (Express and Fastify in turn), a
 * request served, schedule, event-emitter, microservices and WebSocket integrations, a
 * `@WithContext()` method. The baseline is taken after 20 warm-up apps (Nest, the adapters and the
 * library load lazily and cache what they load, and V8 keeps optimised code and feedback: in this
 * suite the first 25 apps add about 1.8 MiB that later apps do not), each heap figure after forced
 * collections. For scale: a closed app that stayed reachable would keep about 275 KiB, so 50 of
 * them 13 MiB; every app object is also checked to be collected.
 */
import 'reflect-metadata';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Controller, Get, Injectable, Module, type INestApplication } from '@nestjs/common';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import request from 'supertest';
import { ContextModule, ContextService, WithContext, currentContext } from 'nestjs-context';
import { ContextEventEmitterModule } from 'nestjs-context/event-emitter';
import { ContextMicroservicesModule } from 'nestjs-context/microservices';
import { ContextScheduleModule } from 'nestjs-context/schedule';
import { ContextWsModule } from 'nestjs-context/websockets';
import { liveApps } from '../../src/runtime/apps.js';
import { explorerState } from '../../src/runtime/method-explorer.js';
import { MyContext } from '../fixtures/app-context.js';
import { bootApp } from '../utils/platforms.js';

const MiB = 1024 * 1024;

@Controller()
class IdController {
  constructor(private readonly context: ContextService<MyContext>) {}
  @Get('id') id(): { id: string | undefined } {
    return { id: this.context.correlationId };
  }
}

@Injectable()
class Work {
  readonly heard: string[] = [];

  @Interval(10_000)
  tick(): void {}

  @OnEvent('heap.ping')
  onPing(): void {
    this.heard.push(currentContext.correlationId as string);
  }

  @WithContext()
  manual(): string {
    return currentContext.correlationId as string;
  }
}

@WebSocketGateway()
class Gateway {
  @SubscribeMessage('id')
  id(): string {
    return currentContext.correlationId as string;
  }
}

@Module({
  imports: [
    ContextModule.forRoot(MyContext),
    ScheduleModule.forRoot(),
    ContextScheduleModule.forRoot(),
    EventEmitterModule.forRoot(),
    ContextEventEmitterModule.forRoot({ mode: 'fresh' }),
    ContextMicroservicesModule.forRoot(),
    ContextWsModule.forRoot({ handshake: true }),
  ],
  controllers: [IdController],
  providers: [Work, Gateway],
})
class FullApp {}

/** The user's methods the integrations wrap, as the classes define them before any app exists. */
const METHODS = [
  [Work.prototype, 'tick'],
  [Work.prototype, 'onPing'],
] as const;
const originals = METHODS.map(([proto, key]) => (proto as unknown as Record<string, unknown>)[key]);

/** Listener counts of the process, by event: what an app left on `process` would show here. */
function processListeners(): Record<string, number> {
  return Object.fromEntries(process.eventNames().map((name) => [String(name), process.listenerCount(name)]));
}

describe('50 apps created and closed in one process', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;

  /** The heap in use once everything collectable is collected (sockets and timers of closed apps close asynchronously). */
  async function settledHeap(): Promise<number> {
    let last = Number.POSITIVE_INFINITY;
    for (let round = 0; round < 10; round++) {
      await new Promise((resolve) => setTimeout(resolve, 30));
      gc();
      const used = process.memoryUsage().heapUsed;
      if (round >= 3 && Math.abs(used - last) < 64 * 1024) return used;
      last = used;
    }
    return process.memoryUsage().heapUsed;
  }

  const collected = new Set<number>();
  const registry = new FinalizationRegistry<number>((i) => collected.add(i));

  /** One app: created, one request and one event and one manual run served, closed. Nothing of it outlives the call. */
  async function cycle(i: number): Promise<void> {
    const app: INestApplication = await bootApp(FullApp, i % 2 === 0 ? () => new ExpressAdapter() : () => new FastifyAdapter(), (a) =>
      a.useWebSocketAdapter(new IoAdapter(a)),
    );
    registry.register(app, i);
    try {
      const res = await request(app.getHttpServer()).get('/id').set('x-request-id', `heap-${i}`);
      expect(res.body).toEqual({ id: `heap-${i}` });
      const work = app.get(Work);
      app.get(EventEmitter2).emit('heap.ping');
      expect(work.heard).toHaveLength(1);
      expect(work.manual()).toMatch(/^[0-9a-f-]{36}$/);
      expect(METHODS.every(([proto, key], n) => (proto as unknown as Record<string, unknown>)[key] !== originals[n])).toBe(true);
    } finally {
      await app.close();
    }
  }

  it('leave no wrapper, registry entry or process listener behind, and the heap returns to its baseline', async () => {
    for (let i = 0; i < 20; i++) await cycle(i); // warm-up
    const listeners = processListeners();
    const baseline = await settledHeap();

    for (let i = 0; i < 50; i++) await cycle(100 + i);
    const after = await settledHeap();

    expect(liveApps()).toHaveLength(0);
    expect(explorerState()).toEqual({ bound: 0, wrappers: 0 });
    expect(METHODS.map(([proto, key]) => (proto as unknown as Record<string, unknown>)[key])).toEqual(originals);
    expect(processListeners()).toEqual(listeners);
    const fifty = Array.from({ length: 50 }, (_, i) => 100 + i);
    expect(fifty.filter((i) => !collected.has(i))).toEqual([]);

    const growth = after - baseline;
    // 2 MiB or 5% of the heap, whichever is larger, but at most 4 MiB: a worker that ran other suites
    // first can start from 170 MiB, where 5% would let 30 retained apps through.
    const allowed = Math.min(4 * MiB, Math.max(2 * MiB, baseline * 0.05));
    process.stdout.write(
      `[heap] 50 apps: baseline ${(baseline / MiB).toFixed(2)} MiB, after ${(after / MiB).toFixed(2)} MiB, ` +
        `growth ${(growth / 1024).toFixed(0)} KiB (${((growth / baseline) * 100).toFixed(2)}%, ${(growth / 50 / 1024).toFixed(1)} KiB per app; allowed ${(allowed / MiB).toFixed(2)} MiB)\n`,
    );
    expect(growth).toBeLessThan(allowed);
  }, 180_000);
});
