import 'reflect-metadata';
import { Controller, Get, Inject, Injectable, Module, type INestApplication } from '@nestjs/common';
import { firstValueFrom, from, timer, delay, mergeMap, map } from 'rxjs';
import { ContextModule, ContextService, Ctx, currentContext } from '../src/index.js';
import { MyContext } from './fixtures/app-context.js';
import { bootApp, platforms } from './utils/platforms.js';

const REQUESTS = 500;
const instances = new Set<MyContext>();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const jitter = () => Math.floor(Math.random() * 15);

@Injectable()
class Reader {
  constructor(private readonly context: ContextService<MyContext>) {}
  read(): string {
    return this.context.get().correlationId;
  }
}

@Controller()
class RaceController {
  constructor(private readonly reader: Reader, @Inject(MyContext) private readonly injected: MyContext) {}

  @Get('race')
  async race(@Ctx() ctx: MyContext) {
    instances.add(ctx);
    const reads: string[] = [ctx.correlationId, this.injected.correlationId];
    await sleep(jitter());
    reads.push(String(currentContext.correlationId), this.reader.read());
    await new Promise<void>((resolve) => setImmediate(resolve));
    const viaRx = await firstValueFrom(
      timer(jitter()).pipe(
        mergeMap(() => from(Promise.resolve(1))),
        delay(jitter()),
        map(() => this.reader.read()),
      ),
    );
    reads.push(viaRx);
    await Promise.resolve().then(() => sleep(jitter())).then(() => reads.push(String(currentContext.correlationId)));
    return { reads, same: ctx === this.injected };
  }
}

@Module({ imports: [ContextModule.forRoot(MyContext)], controllers: [RaceController], providers: [Reader] })
class RaceModule {}

describe.each(platforms)('isolation under overlapping requests (%s)', (_name, makeAdapter) => {
  let app: INestApplication;
  let base: string;
  beforeAll(async () => {
    app = await bootApp(RaceModule, makeAdapter);
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app.close();
  });

  it(`${REQUESTS} concurrent requests with random async delays never see another request's context`, async () => {
    instances.clear();
    const ids = Array.from({ length: REQUESTS }, (_, i) => `race-${i}-${Math.random().toString(36).slice(2, 8)}`);
    const results = await Promise.all(
      ids.map(async (id) => {
        const res = await fetch(`${base}/race`, { headers: { 'x-request-id': id } });
        return { id, header: res.headers.get('x-request-id'), body: (await res.json()) as { reads: string[]; same: boolean } };
      }),
    );
    const crossTalk = results.filter((r) => r.header !== r.id || r.body.reads.length !== 6 || r.body.reads.some((read) => read !== r.id));
    expect(crossTalk).toEqual([]);
    expect(results.every((r) => r.body.same)).toBe(true);
    expect(instances.size).toBe(REQUESTS);
  });
});
