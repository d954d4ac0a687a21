import 'reflect-metadata';
import { Controller, Get, Headers, Param, Req, Res, type INestApplication } from '@nestjs/common';
import { Logger as PinoNestLogger, LoggerModule, PinoLogger } from 'nestjs-pino';
import pino from 'pino';
import { pinoHttp } from 'pino-http';
import { storage } from '../../src/record/context-record.js';
import { ContextService } from '../../src/index.js';
import { sanitizeLogValue } from '../../src/integrations/logger/index.js';
import { contextMixin, pinoHttpContext } from '../../src/integrations/pino/index.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { captureStream, createLoggingModule, HOSTILE, LogContext, listen, RAW_CONTROL, rawRequest, SECRET } from './helpers.js';

type Line = Record<string, unknown> & { msg?: string; raw: string };
type AnyRequest = { raw?: AnyRequest; log: pino.Logger; allLogs?: pino.Logger[] };

/** pino-http's logger of a request (on Fastify, `req.raw.log` is Fastify's own logger, so read `allLogs`). */
function requestLogger(req: AnyRequest): pino.Logger {
  const raw = req.raw ?? req;
  return raw.allLogs?.[raw.allLogs.length - 1] ?? raw.log;
}

const HEX32 = /^[0-9a-f]{32}$/;
const ID_KEYS = ['correlationId', 'traceId', 'spanId', 'userId'];

function parse(raw: string): Line {
  return { ...(JSON.parse(raw) as Record<string, unknown>), raw };
}

/** Waits (up to 10 s) for `done`: pino-http writes its response line when the response has finished. */
async function settle(done: () => boolean): Promise<void> {
  for (let waited = 0; !done() && waited < 10_000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** pino never merges keys: a key written twice would be in the raw line twice. */
function expectEachKeyOnce(line: Line): void {
  for (const key of ID_KEYS) expect(line.raw.split(`"${key}":`).length - 1).toBeLessThanOrEqual(1);
}

/** Logs through `req.log` from code that lost the async context (a callback-based library would). */
@Controller('lost')
class LostController {
  constructor(private readonly pinoLogger: PinoLogger) {}

  @Get(':id')
  lost(@Param('id') id: string, @Req() req: AnyRequest) {
    const log = requestLogger(req);
    storage.exit(() => {
      log.info(`lost ${id}`);
      this.pinoLogger.info(`lost via PinoLogger ${id}`);
    });
    return {};
  }
}

/** Sends the response from code that lost the async context, so pino-http's response line is written outside it. */
@Controller('outside')
class OutsideController {
  constructor(private readonly context: ContextService<LogContext>) {}

  @Get(':id')
  end(@Headers('x-user') user: string, @Res() res: { json?: (body: unknown) => void; send: (body: unknown) => void }) {
    this.context.get().userId = user;
    storage.exit(() => (res.json ?? res.send).call(res, { ok: true }));
  }
}

// nestjs-pino builds one pino-http instance per process: every app of this file shares it.
// forRoutes: nestjs-pino's default route pattern does not match on Fastify with NestJS 12.
const nestjsPino = captureStream();
const pinoModule = LoggerModule.forRoot({
  forRoutes: ['{*splat}'],
  pinoHttp: { ...pinoHttpContext({ contextFields: ['userId'] }), stream: nestjsPino.stream, level: 'info' },
});

describe.each(platforms)('nestjs-pino with pinoHttpContext() (%s)', (_platform, makeAdapter) => {
  let app: INestApplication;
  let base: string;
  const lines = (): Line[] => nestjsPino.lines().map(parse);
  const byMsg = (msg: string): Line[] => lines().filter((l) => l.msg === msg);
  const completed = (id: string): Line | undefined =>
    lines().find((l) => (l.msg === 'request completed' || l.msg === 'request errored') && (l.req as { headers: Record<string, string> }).headers['x-request-id'] === id);

  beforeAll(async () => {
    nestjsPino.clear();
    app = await bootApp(createLoggingModule({ correlationId: { validate: () => true } }, [pinoModule], [LostController, OutsideController]), makeAdapter, (a) => a.useLogger(a.get(PinoNestLogger)));
    base = await listen(app);
  });
  afterAll(async () => {
    await app.close();
  });

  it('lines written outside any context get no fields', () => {
    const startup = lines().filter((l) => /Mapped|started/.test(String(l.msg)));
    expect(startup.length).toBeGreaterThan(0);
    for (const line of startup) expect(line).not.toHaveProperty('correlationId');
  });

  it('success: app lines, Nest lines and pino-http\'s "request completed" carry the same fields, each once', async () => {
    nestjsPino.clear();
    const res = await fetch(`${base}/orders/1`, { headers: { 'x-request-id': 'p-1', 'x-user': 'u-1' } });
    const body = (await res.json()) as { traceId: string; spanId: string };
    await settle(() => completed('p-1') !== undefined);
    const found = [...byMsg('get 1'), ...byMsg('placing order 1'), completed('p-1')];
    expect(found).toHaveLength(3);
    for (const line of found) {
      expect(line).toMatchObject({ correlationId: 'p-1', traceId: body.traceId, spanId: body.spanId, userId: 'u-1' });
      expectEachKeyOnce(line!);
    }
    expect(nestjsPino.lines().join('\n')).not.toContain(SECRET);
  });

  it('unhandled 500: "request errored", the app line and Nest\'s ExceptionsHandler line carry the fields', async () => {
    nestjsPino.clear();
    const res = await fetch(`${base}/orders/3/fail`, { headers: { 'x-request-id': 'p-500', 'x-user': 'u-3' } });
    expect(res.status).toBe(500);
    await settle(() => completed('p-500') !== undefined);
    const errored = completed('p-500');
    expect(errored?.msg).toBe('request errored');
    const handler = lines().find((l) => l.context === 'ExceptionsHandler');
    const found = [...byMsg('failing 3'), handler, errored];
    expect(found).toHaveLength(3);
    for (const line of found) {
      expect(line).toMatchObject({ correlationId: 'p-500', userId: 'u-3' });
      expect(line?.traceId).toMatch(HEX32);
      expectEachKeyOnce(line!);
    }
  });

  it('120 concurrent requests: every line carries its own request\'s fields', async () => {
    nestjsPino.clear();
    const n = 120;
    const traces = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const res = await fetch(`${base}/orders/c${i}`, { headers: { 'x-request-id': `pc-${i}`, 'x-user': `user-${i}` } });
        return ((await res.json()) as { traceId: string }).traceId;
      }),
    );
    await settle(() => Array.from({ length: n }, (_, i) => completed(`pc-${i}`)).every((line) => line !== undefined));
    for (let i = 0; i < n; i++) {
      const found = [...byMsg(`get c${i}`), ...byMsg(`placing order c${i}`), completed(`pc-${i}`)];
      expect(found).toHaveLength(3);
      for (const line of found) {
        expect(line).toMatchObject({ correlationId: `pc-${i}`, userId: `user-${i}`, traceId: traces[i] });
        expectEachKeyOnce(line!);
      }
    }
    expect(new Set(traces).size).toBe(n);
  });

  it('a line written through req.log where the context was lost still carries the request\'s ids', async () => {
    nestjsPino.clear();
    await fetch(`${base}/lost/7`, { headers: { 'x-request-id': 'lost-7' } });
    for (const msg of ['lost 7', 'lost via PinoLogger 7']) {
      const [line] = byMsg(msg);
      expect(line).toMatchObject({ correlationId: 'lost-7' });
      expect(line?.traceId).toMatch(HEX32);
      expectEachKeyOnce(line!);
    }
  });

  it('a response sent where the context was lost: the response line still has the ids and the selected field, once', async () => {
    nestjsPino.clear();
    const res = await fetch(`${base}/outside/1`, { headers: { 'x-request-id': 'out-1', 'x-user': 'out-user' } });
    expect(res.status).toBe(200);
    await settle(() => completed('out-1') !== undefined);
    const line = completed('out-1');
    expect(line).toMatchObject({ msg: 'request completed', correlationId: 'out-1', userId: 'out-user' });
    expect(line?.traceId).toMatch(HEX32);
    expectEachKeyOnce(line!);
  });

  it('log injection: header values are escaped and capped on every line', async () => {
    nestjsPino.clear();
    expect(await rawRequest(base, '/orders/i1', { 'x-request-id': HOSTILE.c1, 'x-user': HOSTILE.c1 })).toBe(200);
    expect(await rawRequest(base, '/orders/i2', { 'x-request-id': HOSTILE.long })).toBe(200);
    const [c1] = byMsg('get i1');
    expect(c1).toMatchObject({ correlationId: sanitizeLogValue(HOSTILE.c1), userId: sanitizeLogValue(HOSTILE.c1) });
    const [long] = byMsg('get i2');
    expect(long?.correlationId).toHaveLength(256);
    for (const line of lines()) {
      for (const key of ID_KEYS) if (typeof line[key] === 'string') expect(line[key]).not.toMatch(RAW_CONTROL);
    }
  });
});

describe.each(platforms)('nestjs-pino with enterEarly: false — pino-http runs before the context exists (%s)', (_platform, makeAdapter) => {
  it('the response line reads the context from the request; app lines get it from the mixin', async () => {
    const app = await bootApp(createLoggingModule({ enterEarly: false }, [pinoModule]), makeAdapter, (a) => a.useLogger(a.get(PinoNestLogger)));
    const base = await listen(app);
    nestjsPino.clear();
    await fetch(`${base}/orders/late`, { headers: { 'x-request-id': 'late-1', 'x-user': 'late-user' } });
    await settle(() => nestjsPino.lines().some((l) => l.includes('"request completed"')));
    await app.close();
    const lines = nestjsPino.lines().map(parse);
    const found = [lines.find((l) => l.msg === 'get late'), lines.find((l) => l.msg === 'request completed')];
    for (const line of found) {
      expect(line).toMatchObject({ correlationId: 'late-1' });
      expect(line?.traceId).toMatch(HEX32);
      expectEachKeyOnce(line!);
    }
    expect(found[0]).toMatchObject({ userId: 'late-user' });
  });
});

/** Plain pino-http mounted with app.use(): on Fastify it runs before the context entry. */
@Controller('plain')
class PlainController {
  @Get(':id')
  get(@Param('id') id: string, @Req() req: AnyRequest) {
    requestLogger(req).info(`plain ${id}`);
    return {};
  }
}

describe.each(platforms)('pino-http mounted with app.use() (%s)', (_platform, makeAdapter) => {
  it('"request completed" and req.log lines carry the fields, each once', async () => {
    const capture = captureStream();
    const middleware = pinoHttp({ ...pinoHttpContext(), stream: capture.stream });
    const app = await bootApp(createLoggingModule({}, [], [PlainController]), makeAdapter, (a) => a.use(middleware));
    const base = await listen(app);
    await Promise.all(Array.from({ length: 100 }, (_, i) => fetch(`${base}/plain/${i}`, { headers: { 'x-request-id': `plain-${i}` } })));
    await settle(() => capture.lines().filter((l) => l.includes('"request completed"')).length === 100);
    await app.close();
    const lines = capture.lines().map(parse);
    for (let i = 0; i < 100; i++) {
      const own = lines.filter((l) => l.msg === `plain ${i}` || (l.msg === 'request completed' && (l.req as { url: string }).url === `/plain/${i}`));
      expect(own).toHaveLength(2);
      for (const line of own) {
        expect(line).toMatchObject({ correlationId: `plain-${i}` });
        expect(line.traceId).toBe(own[0]!.traceId);
        expectEachKeyOnce(line);
      }
    }
  });
});

describe('pino with contextMixin() alone', () => {
  it('adds the fields inside a context, nothing outside, and builds the context only for selected fields', async () => {
    const capture = captureStream();
    const app = await bootApp(createLoggingModule(), platforms[0][1]);
    const context: ContextService<LogContext> = app.get(ContextService);
    const plain = pino({ mixin: contextMixin() }, capture.stream);
    const selected = pino({ mixin: contextMixin({ contextFields: ['userId', 'tenant'] }) }, capture.stream);
    plain.info('outside');
    context.run(() => {
      plain.info('inside');
      expect(storage.getStore()?.created).toBe(false); // ids and trace never build the context
      context.get().userId = 'u-9';
      selected.info({ tenant: 'explicit wins' }, 'selected');
    }, { correlationId: 'mix-1' });
    await app.close();
    const [outside, inside, sel] = capture.lines().map(parse);
    expect(outside).not.toHaveProperty('correlationId');
    expect(inside).toMatchObject({ correlationId: 'mix-1' });
    expect(inside!.traceId).toMatch(HEX32);
    expect(sel).toMatchObject({ correlationId: 'mix-1', userId: 'u-9', tenant: 'explicit wins' });
  });
});
