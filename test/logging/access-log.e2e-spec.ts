import 'reflect-metadata';
import { ConsoleLogger, Controller, Get, type INestApplication } from '@nestjs/common';
import { ContextConfigError } from '../../src/index.js';
import { ContextLogger, ContextLoggerModule, type AccessLogOptions } from '../../src/integrations/logger/index.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { captureStdio, createLoggingModule, listen, RAW_CONTROL } from './helpers.js';
import { parseJsonLine, type ParsedLine } from './parse.js';

/** A request the test can hold open until it has aborted it. */
const gate = { seen: () => {}, release: () => {} };

@Controller('hang')
class HangController {
  @Get()
  async hang() {
    await new Promise<void>((resolve) => {
      gate.release = resolve;
      gate.seen();
    });
    return { late: true };
  }
}

async function boot(makeAdapter: (typeof platforms)[number][1], accessLog: boolean | AccessLogOptions | undefined, logger: ConsoleLogger = new ContextLogger({ json: true })) {
  const module = createLoggingModule({}, [ContextLoggerModule.forRoot(accessLog === undefined ? {} : { accessLog })], [HangController]);
  const app = await bootApp(module, makeAdapter, (a) => a.useLogger(logger));
  return { app, base: await listen(app) };
}

describe.each(platforms)('access log (%s)', (_platform, makeAdapter) => {
  let app: INestApplication;
  let base: string;
  let capture: ReturnType<typeof captureStdio>;
  const access = (): ParsedLine[] => capture.lines().map(parseJsonLine).filter((l): l is ParsedLine => l?.context === 'AccessLog');
  const waitFor = async (predicate: () => boolean) => {
    for (let waited = 0; !predicate() && waited < 5000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
  };

  beforeAll(async () => {
    capture = captureStdio();
    ({ app, base } = await boot(makeAdapter, true));
  });
  afterAll(async () => {
    await app.close();
    capture.restore();
  });
  beforeEach(() => capture.clear());

  it('one line per request: method, path without the query, status, duration; the logger adds the ids', async () => {
    const res = await fetch(`${base}/orders/1?token=secret-token`, { headers: { 'x-request-id': 'acc-1' } });
    await waitFor(() => access().length === 1);
    const [line] = access();
    expect(line?.message).toMatch(/^GET \/orders\/1 200 \d+(\.\d)?ms$/);
    expect(line?.fields).toMatchObject({ correlationId: 'acc-1', traceId: (await res.json() as { traceId: string }).traceId });
    expect(capture.lines().join('\n')).not.toContain('secret-token');
  });

  it('unhandled 500, unknown route 404 and malformed JSON 400 each get their line with their id', async () => {
    await fetch(`${base}/orders/3/fail`, { headers: { 'x-request-id': 'acc-500' } });
    await fetch(`${base}/nowhere`, { headers: { 'x-request-id': 'acc-404' } });
    await fetch(`${base}/orders/login`, { method: 'POST', headers: { 'x-request-id': 'acc-400', 'content-type': 'application/json' }, body: '{"a":' });
    await waitFor(() => access().length === 3);
    const lines = access().map((l) => [l.message.replace(/ [\d.]+ms$/, ''), l.fields.correlationId]);
    expect(lines).toEqual([
      ['GET /orders/3/fail 500', 'acc-500'],
      ['GET /nowhere 404', 'acc-404'],
      ['POST /orders/login 400', 'acc-400'],
    ]);
  });

  it('120 concurrent requests: one line each, with its own correlation id', async () => {
    await Promise.all(Array.from({ length: 120 }, (_, i) => fetch(`${base}/orders/a${i}`, { headers: { 'x-request-id': `acc-c-${i}` } })));
    await waitFor(() => access().length === 120);
    const lines = access();
    expect(lines).toHaveLength(120);
    for (const line of lines) {
      const i = /^GET \/orders\/a(\d+) 200 /.exec(line.message)?.[1];
      expect(line.fields.correlationId).toBe(`acc-c-${i}`);
    }
  });

  it('an aborted request gets a line marked aborted', async () => {
    const seen = new Promise<void>((resolve) => (gate.seen = resolve));
    const abort = new AbortController();
    const pending = fetch(`${base}/hang`, { headers: { 'x-request-id': 'acc-abort' }, signal: abort.signal }).catch(() => undefined);
    await seen;
    abort.abort();
    await pending;
    await waitFor(() => access().length === 1);
    gate.release();
    const [line] = access();
    expect(line?.message).toMatch(/^GET \/hang \d{3} [\d.]+ms aborted$/);
    expect(line?.fields.correlationId).toBe('acc-abort');
  });

  it('very long paths are capped; percent-encoded CR/LF stays encoded', async () => {
    const longPath = `/${Array.from({ length: 60 }, () => 'p'.repeat(49)).join('/')}`; // 3,000 characters, no long parameter
    await fetch(`${base}${longPath}`, { headers: { 'x-request-id': 'acc-long' } });
    await fetch(`${base}/orders/x%0D%0A%1B%5B31m`, { headers: { 'x-request-id': 'acc-enc' } });
    await waitFor(() => access().length === 2);
    const [long, encoded] = access();
    expect(long?.message.startsWith(`GET ${longPath.slice(0, 253)}... 404 `)).toBe(true);
    expect(long?.fields.correlationId).toBe('acc-long');
    expect(encoded?.message).toMatch(/^GET \/orders\/x%0D%0A%1B%5B31m 200 /);
    for (const line of capture.lines()) expect(line).not.toMatch(RAW_CONTROL);
  });
});

describe.each(platforms)('access log options (%s)', (_platform, makeAdapter) => {
  it('is off by default', async () => {
    const capture = captureStdio();
    try {
      const { app, base } = await boot(makeAdapter, undefined);
      await fetch(`${base}/orders/1`);
      await app.close();
      expect(capture.lines().filter((l) => l.includes('AccessLog'))).toEqual([]);
    } finally {
      capture.restore();
    }
  });

  it('level, context label, skip and format; a format can carry the id for a logger that is not context-aware', async () => {
    const capture = captureStdio();
    try {
      const { app, base } = await boot(
        makeAdapter,
        {
          level: 'warn',
          context: 'HTTP',
          skip: (req) => req.url === '/orders/health',
          format: (e) => `${e.method} ${e.path} -> ${e.status} id=${e.correlationId ?? '-'}${e.aborted ? ' aborted' : ''}`,
        },
        new ConsoleLogger({ colors: false }),
      );
      await fetch(`${base}/orders/health`);
      await fetch(`${base}/orders/9`, { headers: { 'x-request-id': 'opt-9' } });
      await app.close();
      const lines = capture.lines().filter((l) => l.includes('[HTTP]'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/ WARN \[HTTP\] GET \/orders\/9 -> 200 id=opt-9$/);
    } finally {
      capture.restore();
    }
  });
});

describe('ContextLoggerModule.forRoot() checks its options at bootstrap', () => {
  it.each([
    [{ accessLog: 'yes' }, /option accessLog must be true, false or an object, got string "yes"/],
    [{ accessLog: { level: 'info' } }, /option accessLog\.level must be one of log, verbose, debug, warn, got string "info"/],
    [{ accessLog: { skip: 1 } }, /option accessLog\.skip must be a function/],
    [{ accessLog: { maxPathLength: 2 } }, /option accessLog\.maxPathLength must be an integer of at least 8, got number 2/],
    [{ contextFields: 'userId' }, /ContextLogger: option contextFields must be a list of field names or a function of the context, got string "userId"\. Use e\.g\./],
    [{ keys: { traceId: 'trace id' } }, /ContextLogger: option keys\.traceId must be a field name or false, got string "trace id"/],
  ])('%j', (options, message) => {
    expect(() => ContextLoggerModule.forRoot(options as never)).toThrow(ContextConfigError);
    expect(() => ContextLoggerModule.forRoot(options as never)).toThrow(message);
  });
});
