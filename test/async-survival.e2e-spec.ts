import 'reflect-metadata';
import { Controller, Get, Module, Sse, StreamableFile, type INestApplication, type MessageEvent } from '@nestjs/common';
import { Readable } from 'node:stream';
import { interval, map, take, type Observable, concatMap, of, delay } from 'rxjs';
import request from 'supertest';
import { ContextModule, currentContext } from '../src/index.js';
import { MyContext } from './fixtures/app-context.js';
import { bootApp, platforms } from './utils/platforms.js';

@Controller('async')
class AsyncController {
  @Get('timeout')
  timeout(): Promise<unknown> {
    return new Promise((resolve) => setTimeout(() => resolve({ id: currentContext.correlationId }), 5));
  }

  @Get('observable')
  observable(): Observable<unknown> {
    return of(1).pipe(
      delay(3),
      concatMap(() => new Promise((resolve) => setImmediate(resolve))),
      map(() => ({ id: currentContext.correlationId })),
    );
  }

  @Get('stream')
  stream(): StreamableFile {
    async function* chunks() {
      for (let i = 0; i < 3; i++) {
        await new Promise((resolve) => setTimeout(resolve, 2));
        yield `${String(currentContext.correlationId)};`;
      }
    }
    return new StreamableFile(Readable.from(chunks()));
  }

  @Sse('events')
  events(): Observable<MessageEvent> {
    return interval(2).pipe(
      take(3),
      map((i) => ({ data: { i, id: currentContext.correlationId } })),
    );
  }
}

@Module({ imports: [ContextModule.forRoot(MyContext)], controllers: [AsyncController] })
class AsyncModule {}

describe.each(platforms)('the context survives async work (%s)', (_name, makeAdapter) => {
  let app: INestApplication;
  beforeAll(async () => {
    app = await bootApp(AsyncModule, makeAdapter);
  });
  afterAll(async () => {
    await app.close();
  });

  it.each(['timeout', 'observable'])('%s', async (path) => {
    const res = await request(app.getHttpServer()).get(`/async/${path}`).set('x-request-id', `a-${path}`);
    expect(res.body).toEqual({ id: `a-${path}` });
  });

  it('StreamableFile chunks produced later', async () => {
    const res = await request(app.getHttpServer()).get('/async/stream').set('x-request-id', 's-1').buffer(true).parse((r, cb) => {
      let text = '';
      r.on('data', (c: Buffer) => (text += c.toString()));
      r.on('end', () => cb(null, text));
    });
    expect(res.body).toBe('s-1;s-1;s-1;');
    expect(res.headers['x-request-id']).toBe('s-1');
  });

  it('server-sent events emitted by an rxjs interval', async () => {
    const res = await request(app.getHttpServer()).get('/async/events').set('x-request-id', 'sse-1').buffer(true).parse((r, cb) => {
      let text = '';
      r.on('data', (c: Buffer) => (text += c.toString()));
      r.on('end', () => cb(null, text));
    });
    const data = String(res.body).split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));
    expect(data).toEqual([0, 1, 2].map((i) => ({ i, id: 'sse-1' })));
  });
});
