import 'reflect-metadata';
import { Controller, Get, Module, Post, Body } from '@nestjs/common';
import request from 'supertest';
import { ContextModule, Ctx, currentContext, ContextService, type ContextInit } from '../src/index.js';
import { platforms, bootApp } from './utils/platforms.js';

class MyContext {
  correlationId: string;
  constructor(init: ContextInit) { this.correlationId = init.correlationId; }
}

@Controller()
class C {
  constructor(private readonly svc: ContextService<MyContext>) {}
  @Get() get(@Ctx() ctx: MyContext) {
    return { a: ctx.correlationId, b: currentContext.correlationId, c: this.svc.get().correlationId };
  }
  @Post() async post(@Body() body: unknown, @Ctx() ctx: MyContext) {
    await new Promise((r) => setTimeout(r, 5));
    return { a: ctx.correlationId, b: currentContext.correlationId, body };
  }
}

@Module({ imports: [ContextModule.forRoot(MyContext)], controllers: [C] })
class AppModule {}

describe.each(platforms)('smoke %s', (_name, adapter) => {
  it('works', async () => {
    const app = await bootApp(AppModule, adapter);
    const res = await request(app.getHttpServer()).get('/').set('x-request-id', 'abc');
    console.log(res.status, res.headers['x-request-id'], res.body);
    const res2 = await request(app.getHttpServer()).post('/').send({ x: 1 });
    console.log(res2.status, res2.headers['x-request-id'], res2.body);
    await app.close();
  });
});
