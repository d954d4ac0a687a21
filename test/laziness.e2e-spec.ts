import 'reflect-metadata';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import request from 'supertest';
import { ContextModule, ContextService, Ctx, currentContext } from '../src/index.js';
import { constructed, MyContext } from './fixtures/app-context.js';
import { bootApp, platforms } from './utils/platforms.js';

@Controller('lazy')
class LazyController {
  constructor(private readonly context: ContextService<MyContext>) {}
  @Get('untouched') untouched() {
    return 'ok';
  }
  @Get('id-only') idOnly() {
    return this.context.correlationId;
  }
  @Get('many') many(@Ctx() ctx: MyContext) {
    return [ctx, this.context.get(), currentContext.correlationId].length;
  }
}

@Module({ imports: [ContextModule.forRoot(MyContext)], controllers: [LazyController] })
class LazyModule {}

describe.each(platforms)('the context is built lazily, at most once per request (%s)', (_name, makeAdapter) => {
  let app: INestApplication;
  beforeAll(async () => {
    app = await bootApp(LazyModule, makeAdapter);
  });
  afterAll(async () => {
    await app.close();
  });
  beforeEach(() => (constructed.count = 0));

  it('a request that never touches it never calls the constructor', async () => {
    for (let i = 0; i < 5; i++) await request(app.getHttpServer()).get('/lazy/untouched').expect(200);
    expect(constructed.count).toBe(0);
  });

  it('reading only the correlation id does not build the context', async () => {
    const res = await request(app.getHttpServer()).get('/lazy/id-only').set('x-request-id', 'only-id');
    expect(res.text).toBe('only-id');
    expect(constructed.count).toBe(0);
  });

  it('three reads build it once', async () => {
    await request(app.getHttpServer()).get('/lazy/many').expect(200);
    expect(constructed.count).toBe(1);
  });
});
