import 'reflect-metadata';
import { type INestApplication } from '@nestjs/common';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import winston from 'winston';
import { ContextService } from '../../src/index.js';
import { sanitizeLogValue } from '../../src/integrations/logger/index.js';
import { contextFormat, contextMeta } from '../../src/integrations/winston/index.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { removeTree, startScript, transpile, type ChildApp } from './child.js';
import { captureStream, createLoggingModule, HOSTILE, LogContext, RAW_CONTROL, rawRequest, SECRET } from './helpers.js';

const { format, transports } = winston;
const HEX32 = /^[0-9a-f]{32}$/;
type Line = Record<string, unknown> & { message: string };

// nest-winston is CommonJS and requires the ESM-only @nestjs/common, which Jest cannot do on Node 20:
// the app runs in its own Node process (test/logging/fixtures/winston-app.ts) and these tests are its client.
let out: string;

/** Waits (up to 10 s) until the child's stdout satisfies `done`: its lines cross a pipe after the responses. */
async function settle(done: () => boolean): Promise<void> {
  for (let waited = 0; !done() && waited < 10_000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
}

beforeAll(() => {
  out = transpile();
});
afterAll(() => removeTree(out));

describe.each(platforms.map(([name]) => name))('nest-winston with contextFormat() + contextMeta(), JSON (%s)', (platform) => {
  let app: ChildApp;
  const lines = (): Line[] => app.lines().map((raw) => JSON.parse(raw) as Line);
  const byMessage = (message: string): Line[] => lines().filter((l) => l.message === message);

  beforeAll(async () => {
    app = await startScript(out, 'test/logging/fixtures/winston-app.js', [platform, 'json']);
  });
  afterAll(async () => {
    await app.stop();
  });

  it('entries written outside any context get no fields (the ordinary defaultMeta stays)', () => {
    const startup = lines().filter((l) => /Mapped|started/.test(l.message));
    expect(startup.length).toBeGreaterThan(0);
    for (const line of startup) {
      expect(line).not.toHaveProperty('correlationId');
      expect(line.service).toBe('orders');
    }
  });

  it('success: application entries carry correlationId, traceId, spanId and the selected field', async () => {
    app.clear();
    const res = await fetch(`${app.url}/orders/1`, { headers: { 'x-request-id': 'w-1', 'x-user': 'u-1' } });
    const body = (await res.json()) as { traceId: string; spanId: string };
    await settle(() => byMessage('placing order 1').length > 0);
    const found = [...byMessage('get 1'), ...byMessage('placing order 1')];
    expect(found).toHaveLength(2);
    for (const line of found) expect(line).toMatchObject({ correlationId: 'w-1', traceId: body.traceId, spanId: body.spanId, userId: 'u-1', service: 'orders' });
    expect(app.lines().join('\n')).not.toContain(SECRET);
  });

  it('unhandled 500: the app entry and Nest\'s ExceptionsHandler entry carry the fields', async () => {
    app.clear();
    const res = await fetch(`${app.url}/orders/3/fail`, { headers: { 'x-request-id': 'w-500', 'x-user': 'u-3' } });
    expect(res.status).toBe(500);
    await settle(() => lines().some((l) => l.context === 'ExceptionsHandler'));
    const handler = lines().find((l) => l.context === 'ExceptionsHandler');
    expect(handler?.level).toBe('error');
    for (const line of [...byMessage('failing 3'), handler]) {
      expect(line).toMatchObject({ correlationId: 'w-500', userId: 'u-3' });
      expect(line?.traceId).toMatch(HEX32);
    }
  });

  it('120 concurrent requests: every entry carries its own request\'s fields', async () => {
    app.clear();
    const n = 120;
    const traces = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const res = await fetch(`${app.url}/orders/c${i}`, { headers: { 'x-request-id': `wc-${i}`, 'x-user': `user-${i}` } });
        return ((await res.json()) as { traceId: string }).traceId;
      }),
    );
    await settle(() => lines().length >= 2 * n);
    for (let i = 0; i < n; i++) {
      const found = [...byMessage(`get c${i}`), ...byMessage(`placing order c${i}`)];
      expect(found).toHaveLength(2);
      for (const line of found) expect(line).toMatchObject({ correlationId: `wc-${i}`, userId: `user-${i}`, traceId: traces[i] });
    }
    expect(new Set(traces).size).toBe(n);
  });
});

describe.each(platforms.map(([name]) => name))('nest-winston, text output (printf): log injection (%s)', (platform) => {
  let app: ChildApp;
  beforeAll(async () => {
    app = await startScript(out, 'test/logging/fixtures/winston-app.js', [platform, 'text']);
  });
  afterAll(async () => {
    await app.stop();
  });

  it('header, baggage and body values with CR/LF, ANSI and C1 controls, or 10,000 characters, stay on one clean line', async () => {
    app.clear();
    expect(await rawRequest(app.url, '/orders/i1', { 'x-request-id': HOSTILE.c1, 'x-user': HOSTILE.long })).toBe(200);
    const baggage = `userId=${encodeURIComponent(`evil\r\n${HOSTILE.forged}\u001b[31m`)}`;
    expect((await fetch(`${app.url}/orders/i2`, { headers: { 'x-request-id': 'wi-2', baggage } })).status).toBe(200);
    const body = JSON.stringify({ userId: `x\r\n${HOSTILE.forged}\u001b[2J` });
    expect((await fetch(`${app.url}/orders/login`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'wi-3' }, body })).status).toBe(201);
    await settle(() => app.lines().some((line) => line.endsWith('logged in')));

    const lines = app.lines();
    expect(lines).toContain(`info [${sanitizeLogValue(HOSTILE.c1)}] user=${'L'.repeat(253)}... get i1`);
    expect(lines).toContain(`info [wi-2] user=${sanitizeLogValue(`evil\r\n${HOSTILE.forged}\u001b[31m`)} get i2`);
    expect(lines).toContain(`info [wi-3] user=${sanitizeLogValue(`x\r\n${HOSTILE.forged}\u001b[2J`)} logged in`);
    for (const line of lines) {
      expect(line).not.toMatch(RAW_CONTROL);
      expect(line.startsWith('[Nest] 666')).toBe(false);
    }
  });
});

describe('contextMeta(): the fields are those of the log call, even when winston formats the entry later', () => {
  let app: INestApplication;
  let context: ContextService<LogContext>;
  beforeAll(async () => {
    app = await bootApp(createLoggingModule(), platforms[0][1]);
    context = app.get(ContextService);
  });
  afterAll(async () => {
    await app.close();
  });

  it('corked logger: entries formatted in another context keep their own ids with contextMeta(), not without', () => {
    const make = (defaultMeta?: object) => {
      const capture = captureStream();
      const logger = winston.createLogger({ defaultMeta, format: format.combine(contextFormat(), format.json()), transports: [new transports.Stream({ stream: capture.stream })] });
      logger.cork(); // winston queues the entries: formatting happens on uncork()
      context.run(() => logger.info('from A'), { correlationId: 'call-A' });
      context.run(() => logger.info('from B'), { correlationId: 'call-B' });
      context.run(() => logger.uncork(), { correlationId: 'flusher' });
      return capture.lines().map((raw) => JSON.parse(raw) as Line);
    };
    expect(make(contextMeta()).map((l) => [l.message, l.correlationId])).toEqual([['from A', 'call-A'], ['from B', 'call-B']]);
    expect(make().map((l) => l.correlationId)).toEqual(['flusher', 'flusher']); // the hazard contextMeta() removes
  });

  it('File transport under load: 300 concurrent jobs, every entry carries its own job\'s id', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nestjs-context-winston-'));
    const filename = join(dir, 'app.log');
    const logger = winston.createLogger({
      defaultMeta: contextMeta(),
      format: format.combine(contextFormat({ contextFields: ['userId'] }), format.json()),
      transports: [new transports.File({ filename })],
    });
    const padding = 'x'.repeat(20_000); // large entries make the file stream apply backpressure
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        context.run(async () => {
          context.get().userId = `user-${i}`;
          await new Promise((resolve) => setTimeout(resolve, i % 7));
          logger.info(`job ${i}`, { padding });
        }, { correlationId: `job-${i}` }),
      ),
    );
    // wait until the file holds every entry (File writes asynchronously)
    const count = () => (existsSync(filename) ? readFileSync(filename, 'utf8').split('\n').filter(Boolean).length : 0);
    for (let waited = 0; count() < 300 && waited < 20_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    logger.close();
    const entries = readFileSync(filename, 'utf8').split('\n').filter(Boolean).map((raw) => JSON.parse(raw) as Line);
    rmSync(dir, { recursive: true, force: true });
    expect(entries).toHaveLength(300);
    const wrong = entries.filter((e) => e.correlationId !== `job-${e.message.slice(4)}` || e.userId !== `user-${e.message.slice(4)}`);
    expect(wrong).toEqual([]);
  });

  it('without contextMeta() the format reads the active context (Console/Stream transports format at once)', () => {
    const capture = captureStream();
    const logger = winston.createLogger({ format: format.combine(contextFormat(), format.json()), transports: [new transports.Stream({ stream: capture.stream })] });
    logger.info('outside');
    context.run(() => logger.info('inside', { correlationId: 'explicit' }), { correlationId: 'ctx-1' });
    context.run(() => logger.info('inside too'), { correlationId: 'ctx-2' });
    const [outside, inside, inside2] = capture.lines().map((raw) => JSON.parse(raw) as Line);
    expect(outside).not.toHaveProperty('correlationId');
    expect(inside?.correlationId).toBe('explicit'); // keys the entry has are kept
    expect(inside?.traceId).toMatch(HEX32);
    expect(inside2?.correlationId).toBe('ctx-2');
  });
});
