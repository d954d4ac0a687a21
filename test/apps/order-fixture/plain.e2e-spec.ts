/**
 * Order fixture, file 2: an app with ContextModule, @nestjs/schedule and @nestjs/event-emitter but
 * none of the library's integrations for them. Its @OnEvent listeners and @Interval runs get no
 * context — whether or not an app with the integrations ran before it (in this file or another).
 */
import 'reflect-metadata';
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { ContextModule, ContextService, type ContextInit } from 'nestjs-context';
import { ContextEventEmitterModule } from 'nestjs-context/event-emitter';
import { ContextScheduleModule } from 'nestjs-context/schedule';
import { look, record, type Look } from './observe.js';

class OrderContextPlain {
  readonly correlationId: string;
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

@Injectable()
class Listener {
  readonly heard: Look[] = [];
  readonly ticks: Look[] = [];
  constructor(private readonly context: ContextService<OrderContextPlain>) {}

  @OnEvent('order.plain')
  onPlain(): void {
    this.heard.push(look(this.context));
  }

  @Interval(15)
  tick(): void {
    this.ticks.push(look(this.context));
  }
}

/** The app without the integrations; `withIntegrations` builds the same app with them. */
function appModule(withIntegrations: boolean) {
  @Module({
    imports: [
      ContextModule.forRoot(OrderContextPlain),
      ScheduleModule.forRoot(),
      EventEmitterModule.forRoot(),
      ...(withIntegrations ? [ContextScheduleModule.forRoot(), ContextEventEmitterModule.forRoot({ mode: 'fresh' })] : []),
    ],
    providers: [Listener],
  })
  class PlainApp {}
  return PlainApp;
}

const name = (): string => expect.getState().currentTestName ?? '';

/** Boots the plain app, emits one event, waits for one interval run; returns what its listener saw. */
async function plainRun(): Promise<{ heard: Look[]; tick: Look | undefined }> {
  const app: INestApplicationContext = await NestFactory.createApplicationContext(appModule(false), { logger: false });
  try {
    const listener = app.get(Listener);
    app.get(EventEmitter2).emit('order.plain');
    for (let i = 0; i < 100 && listener.ticks.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    return { heard: listener.heard, tick: listener.ticks[0] };
  } finally {
    await app.close();
  }
}

const NONE: Look = { active: false, error: 'ContextNotActiveError' };

describe('an app without the integrations', () => {
  it('opens no context in its @OnEvent listener or its @Interval run', async () => {
    const seen = await plainRun();
    record(import.meta.url, name(), seen);
    expect(seen).toEqual({ heard: [NONE], tick: NONE });
  });

  it('still opens none after an app with the integrations (same classes) ran and closed', async () => {
    const wired = await NestFactory.createApplicationContext(appModule(true), { logger: false });
    wired.get(EventEmitter2).emit('order.plain');
    const during = wired.get(Listener).heard;
    await wired.close();
    const seen = await plainRun();
    record(import.meta.url, name(), { during, seen });
    expect(during).toEqual([{ active: true, cls: 'OrderContextPlain', id: 'fresh' }]);
    expect(seen).toEqual({ heard: [NONE], tick: NONE });
  });

  it('opens none while an app with the integrations (same classes) runs beside it', async () => {
    const plain = await NestFactory.createApplicationContext(appModule(false), { logger: false });
    const wired = await NestFactory.createApplicationContext(appModule(true), { logger: false });
    try {
      plain.get(EventEmitter2).emit('order.plain');
      wired.get(EventEmitter2).emit('order.plain');
      const seen = { plain: plain.get(Listener).heard, wired: wired.get(Listener).heard };
      record(import.meta.url, name(), seen);
      expect(seen).toEqual({ plain: [NONE], wired: [{ active: true, cls: 'OrderContextPlain', id: 'fresh' }] });
    } finally {
      await wired.close();
      await plain.close();
    }
  });
});
