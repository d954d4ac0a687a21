import 'reflect-metadata';
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Cron, Interval, ScheduleModule, Timeout } from '@nestjs/schedule';
import { ContextModule, ContextService, currentContext } from 'nestjs-context';
import { activeContext as getCurrentContext } from '../utils/internals.js';
import { ContextScheduleModule } from 'nestjs-context/schedule';
import { MyContext } from '../fixtures/app-context.js';
import { Log, sleep } from './log.js';

interface Run {
  key: string;
  id: string | undefined;
  current: string;
  same: boolean;
  traceId: string | undefined;
  afterAwait?: string | undefined;
  source?: string;
}

const runs = new Log<Run>();

class SourceContext extends MyContext {
  source: string;
  constructor(init: ConstructorParameters<typeof MyContext>[0]) {
    super(init);
    this.source = init.source;
  }
}

@Injectable()
class Jobs {
  constructor(private readonly context: ContextService<SourceContext>) {}

  private record(key: string, extra: Partial<Run> = {}): void {
    const ctx = this.context.get();
    runs.push({
      key,
      id: this.context.correlationId,
      current: currentContext.correlationId as string,
      same: getCurrentContext() === ctx,
      traceId: this.context.trace?.traceId,
      source: ctx.source,
      ...extra,
    });
  }

  @Interval('every-40ms', 40)
  async everyFewMs(): Promise<void> {
    const before = this.context.correlationId;
    await sleep(15); // overlaps the next run: each run keeps its own context across awaits
    this.record('interval', { afterAwait: before });
  }

  @Timeout(10)
  once(): void {
    this.record('timeout');
  }

  @Cron('* * * * * *')
  everySecond(): void {
    this.record('cron');
  }
}

@Module({
  imports: [ContextModule.forRoot(SourceContext), ScheduleModule.forRoot(), ContextScheduleModule.forRoot()],
  providers: [Jobs],
})
class AppModule {}

describe('@nestjs/schedule: a fresh context per run', () => {
  let app: INestApplicationContext;

  beforeAll(async () => {
    app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('@Interval: every run has its own correlation id and trace, kept across awaits', async () => {
    const list = await runs.wait('interval', 4);
    const ids = list.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(list.map((r) => r.traceId)).size).toBe(list.length);
    for (const r of list) {
      expect(r.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.current).toBe(r.id);
      expect(r.afterAwait).toBe(r.id);
      expect(r.same).toBe(true);
      expect(r.source).toBe('schedule');
    }
  });

  it('@Timeout: the run has a context', async () => {
    const [r] = await runs.wait('timeout');
    expect(r!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(r!.same).toBe(true);
  });

  it('@Cron: distinct contexts per run', async () => {
    const list = await runs.wait('cron', 2, 5000);
    expect(list[0]!.id).not.toBe(list[1]!.id);
    expect(list[0]!.current).toBe(list[0]!.id);
  });

  it('no context leaks out of a run', () => {
    expect(app.get(ContextService).active).toBe(false);
  });
});

const valueRuns = new Log<{ key: string; id: string | undefined }>();

/** Not `@Injectable()`: registered with `useValue`, so Nest only knows its instance. */
class ValueJobs {
  @Timeout(10)
  once(): void {
    valueRuns.push({ key: 'value-timeout', id: currentContext.correlationId as string | undefined });
  }
}

describe('@nestjs/schedule: a useValue provider', () => {
  it('its scheduled methods run in a fresh context too', async () => {
    @Module({
      imports: [ContextModule.forRoot(MyContext), ScheduleModule.forRoot(), ContextScheduleModule.forRoot()],
      providers: [{ provide: 'VALUE_JOBS', useValue: new ValueJobs() }],
    })
    class ValueModule {}
    const app = await NestFactory.createApplicationContext(ValueModule, { logger: false });
    try {
      const [r] = await valueRuns.wait('value-timeout');
      expect(r!.id).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      await app.close();
    }
  });
});
