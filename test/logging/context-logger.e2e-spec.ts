import 'reflect-metadata';
import { Logger, type INestApplication } from '@nestjs/common';
import { ContextService } from '../../src/index.js';
import { ContextLogger, ContextLoggerModule } from '../../src/integrations/logger/index.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { captureStdio, createLoggingModule, LogContext, listen, SECRET } from './helpers.js';
import { parseJsonLine, parseTextLine, type ParsedLine } from './parse.js';

const modes = [
  ['text', parseTextLine, false],
  ['json', parseJsonLine, true],
] as const;
const matrix = platforms.flatMap(([name, makeAdapter]) => modes.map(([mode, parse, json]) => [name, mode, makeAdapter, parse, json] as const));

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

describe.each(matrix)('ContextLogger on %s, %s mode', (_platform, mode, makeAdapter, parse, json) => {
  let app: INestApplication;
  let base: string;
  let capture: ReturnType<typeof captureStdio>;
  const parsed = (): ParsedLine[] => capture.lines().map(parse).filter((line): line is ParsedLine => line !== undefined);
  // NestJS 12 logs an Error as its message (the stack apart); NestJS 11's JSON mode as `Error: <message>` plus the stack.
  const byMessage = (message: string): ParsedLine[] =>
    parsed().filter((line) => line.message === message || line.message === `Error: ${message}` || line.message.startsWith(`Error: ${message}\n`));

  beforeAll(async () => {
    capture = captureStdio();
    const logger = new ContextLogger({ json, colors: false, contextFields: ['userId'] });
    app = await bootApp(createLoggingModule(), makeAdapter, (a) => a.useLogger(logger));
    base = await listen(app);
  });
  afterAll(async () => {
    await app.close();
    capture.restore();
  });

  it('lines written outside any context are plain ConsoleLogger lines', () => {
    const startup = parsed().filter((line) => /Mapped|initialized|started/.test(line.message));
    expect(startup.length).toBeGreaterThan(0);
    for (const line of startup) expect(line.fields.correlationId).toBeUndefined();
    capture.clear();
    new Logger('Outside').log('no request here');
    const [line] = byMessage('no request here');
    expect(line).toBeDefined();
    if (json) expect(Object.keys(JSON.parse(line!.raw) as object).sort()).toEqual(['context', 'level', 'message', 'pid', 'timestamp']);
    else expect(line!.raw).toMatch(/^\[Nest\] \d+ {2}- .+ {5}LOG \[Outside\] no request here$/);
  });

  it('success: application lines carry correlationId, traceId, spanId and the selected field', async () => {
    capture.clear();
    const res = await fetch(`${base}/orders/1`, { headers: { 'x-request-id': 'ok-1', 'x-user': 'u-1' } });
    const body = (await res.json()) as { correlationId: string; traceId: string; spanId: string };
    expect(res.status).toBe(200);
    const lines = [...byMessage('get 1'), ...byMessage('placing order 1')];
    expect(lines.map((l) => l.context)).toEqual(['OrdersController', 'OrdersService']);
    for (const line of lines) {
      expect(line.fields).toMatchObject({ correlationId: 'ok-1', traceId: body.traceId, spanId: body.spanId, userId: 'u-1' });
      expect(line.fields.traceId).toMatch(HEX32);
      expect(line.fields.spanId).toMatch(HEX16);
    }
    expect(capture.lines().join('\n')).not.toContain(SECRET);
  });

  it('continues the inbound trace: the trace id on the lines is the caller\'s', async () => {
    capture.clear();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    await fetch(`${base}/orders/2`, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'x-request-id': 'tp-1' } });
    const [line] = byMessage('get 2');
    expect(line?.fields).toMatchObject({ correlationId: 'tp-1', traceId });
    expect(line?.fields.spanId).not.toBe('00f067aa0ba902b7');
    expect(line?.fields.userId).toBeUndefined(); // not set in this request: left out, not "undefined"
  });

  it('unhandled 500: the application line and Nest\'s own ExceptionsHandler line carry the fields', async () => {
    capture.clear();
    const res = await fetch(`${base}/orders/3/fail`, { headers: { 'x-request-id': 'boom-1', 'x-user': 'u-3' } });
    expect(res.status).toBe(500);
    const [app] = byMessage('failing 3');
    const [nest] = byMessage('kaboom 3');
    expect(nest?.context).toBe('ExceptionsHandler');
    expect(nest?.level).toBe('error');
    for (const line of [app, nest]) expect(line?.fields).toMatchObject({ correlationId: 'boom-1', userId: 'u-3' });
    expect(nest?.fields.traceId).toBe(app?.fields.traceId);
  });

  it('120 concurrent requests: every line carries its own request\'s fields', async () => {
    capture.clear();
    const n = 120;
    const results = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const res = await fetch(`${base}/orders/c${i}`, { headers: { 'x-request-id': `conc-${i}`, 'x-user': `user-${i}` } });
        return (await res.json()) as { traceId: string };
      }),
    );
    const traces = new Set<string>();
    for (let i = 0; i < n; i++) {
      const lines = [...byMessage(`get c${i}`), ...byMessage(`placing order c${i}`)];
      expect(lines).toHaveLength(2);
      for (const line of lines) expect(line.fields).toMatchObject({ correlationId: `conc-${i}`, userId: `user-${i}`, traceId: results[i]!.traceId });
      traces.add(String(lines[0]!.fields.traceId));
    }
    expect(traces.size).toBe(n);
  });

  it('a job run with contextService.run() (queue consumer, cron) gets the fields too', async () => {
    capture.clear();
    const context = app.get(ContextService);
    await context.run(async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      new Logger('Job').log('job line');
    }, { correlationId: 'job-7' });
    const [line] = byMessage('job line');
    expect(line?.fields).toMatchObject({ correlationId: 'job-7' });
    expect(line?.fields.traceId).toMatch(HEX32);
  });

  it(`${mode}: by default nothing of the user's context is logged`, async () => {
    const plain = new ContextLogger('Plain', { json, colors: false });
    capture.clear();
    await app.get(ContextService).run(() => {
      (app.get(ContextService).get() as LogContext).userId = 'hidden-user';
      plain.log('defaults');
    });
    const [line] = byMessage('defaults');
    expect(Object.keys(line!.fields).filter((k) => ['correlationId', 'traceId', 'spanId', 'userId', 'secret'].includes(k)).sort()).toEqual(['correlationId', 'spanId', 'traceId']);
    expect(line!.raw).not.toContain('hidden-user');
    expect(line!.raw).not.toContain(SECRET);
  });
});

describe.each(platforms)('ContextLoggerModule provides the logger for DI (%s)', (_platform, makeAdapter) => {
  it('app.useLogger(app.get(ContextLogger)) logs with the module\'s options; keys can be renamed or left out', async () => {
    const capture = captureStdio();
    try {
      const module = createLoggingModule({}, [
        ContextLoggerModule.forRoot({ json: true, keys: { traceId: 'trace_id', spanId: false }, contextFields: (ctx) => ({ user: (ctx as LogContext).userId }) }),
      ]);
      const app = await bootApp(module, makeAdapter, (a) => a.useLogger(a.get(ContextLogger)));
      const base = await listen(app);
      await fetch(`${base}/orders/di`, { headers: { 'x-request-id': 'di-1', 'x-user': 'di-user' } });
      await app.close();
      const line = capture.lines().map(parseJsonLine).find((l) => l?.message === 'get di');
      expect(line?.fields).toMatchObject({ correlationId: 'di-1', user: 'di-user' });
      expect(line?.fields.trace_id).toMatch(HEX32);
      expect(line?.fields).not.toHaveProperty('spanId');
      expect(line?.fields).not.toHaveProperty('traceId');
    } finally {
      capture.restore();
    }
  });
});
