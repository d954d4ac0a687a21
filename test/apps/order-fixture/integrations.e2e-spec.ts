/**
 * Order fixture, file 1: an app with ContextModule and the schedule and event-emitter integrations.
 * Its listeners and interval runs get a context of the app's class, each its own; after the app
 * closes, the same methods called directly get none.
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

class OrderContextA {
  readonly correlationId: string;
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

@Injectable()
class Work {
  readonly heard: Look[] = [];
  readonly ticks: Look[] = [];
  constructor(private readonly context: ContextService<OrderContextA>) {}

  @OnEvent('order.ping')
  onPing(): Look {
    const seen = look(this.context);
    this.heard.push(seen);
    return seen;
  }

  @Interval(15)
  tick(): Look {
    const seen = look(this.context);
    this.ticks.push(seen);
    return seen;
  }
}

@Module({
  imports: [
    ContextModule.forRoot(OrderContextA),
    ScheduleModule.forRoot(),
    ContextScheduleModule.forRoot(),
    EventEmitterModule.forRoot(),
    ContextEventEmitterModule.forRoot({ mode: 'fresh' }),
  ],
  providers: [Work],
})
class IntegrationsApp {}

const name = (): string => expect.getState().currentTestName ?? '';

describe('an app with the schedule and event-emitter integrations', () => {
  let app: INestApplicationContext;
  beforeAll(async () => {
    app = await NestFactory.createApplicationContext(IntegrationsApp, { logger: false });
  });
  afterAll(() => app?.close());

  it('an @OnEvent listener runs in a fresh context of the app\'s class', () => {
    const work = app.get(Work);
    app.get(EventEmitter2).emit('order.ping');
    app.get(EventEmitter2).emit('order.ping');
    record(import.meta.url, name(), work.heard);
    expect(work.heard).toEqual([
      { active: true, cls: 'OrderContextA', id: 'fresh' },
      { active: true, cls: 'OrderContextA', id: 'fresh' },
    ]);
  });

  it('an @Interval run gets a context of the app\'s class', async () => {
    const work = app.get(Work);
    for (let i = 0; i < 100 && work.ticks.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    record(import.meta.url, name(), work.ticks[0]);
    expect(work.ticks[0]).toEqual({ active: true, cls: 'OrderContextA', id: 'fresh' });
  });
});

describe('after the app closed', () => {
  it('its methods called directly run outside any context (the wrappers are gone)', async () => {
    const app = await NestFactory.createApplicationContext(IntegrationsApp, { logger: false });
    const work = app.get(Work);
    await app.close();
    const seen = [work.onPing(), work.tick()];
    record(import.meta.url, name(), seen);
    expect(seen).toEqual([
      { active: false, error: 'ContextNotActiveError' },
      { active: false, error: 'ContextNotActiveError' },
    ]);
  });
});
