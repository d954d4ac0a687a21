import 'reflect-metadata';
import { Logger, type INestApplication } from '@nestjs/common';
import { ContextService } from '../../src/index.js';
import { ContextLogger, sanitizeLogValue } from '../../src/integrations/logger/index.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { captureStdio, createLoggingModule, HOSTILE, listen, RAW_CONTROL, rawRequest } from './helpers.js';
import { parseJsonLine, parseTextLine, type ParsedLine } from './parse.js';

const modes = [
  ['text', parseTextLine, false],
  ['json', parseJsonLine, true],
] as const;
const matrix = platforms.flatMap(([name, makeAdapter]) => modes.map(([mode, parse, json]) => [name, mode, makeAdapter, parse, json] as const));

/** Every captured line must be clean: no raw control characters, no forged line of its own. */
function expectNoInjection(lines: string[]): void {
  for (const line of lines) {
    expect(line).not.toMatch(RAW_CONTROL);
    expect(line.startsWith('[Nest] 666')).toBe(false);
  }
}

describe.each(matrix)('log injection through ContextLogger (%s, %s mode)', (_platform, _mode, makeAdapter, parse, json) => {
  let app: INestApplication;
  let base: string;
  let capture: ReturnType<typeof captureStdio>;
  const line = (message: string): ParsedLine | undefined =>
    capture.lines().map(parse).find((l) => l?.message === message);

  beforeAll(async () => {
    capture = captureStdio();
    // A user-supplied validator that accepts anything: the logger must still sanitize.
    const module = createLoggingModule({ correlationId: { validate: () => true }, baggage: { fields: ['userId'] } });
    app = await bootApp(module, makeAdapter, (a) => a.useLogger(new ContextLogger({ json, colors: false, contextFields: ['userId'] })));
    base = await listen(app);
  });
  afterAll(async () => {
    await app.close();
    capture.restore();
  });
  beforeEach(() => capture.clear());

  it('C1 controls (NEL, 8-bit CSI) and TAB in the correlation id header are escaped', async () => {
    expect(await rawRequest(base, '/orders/inj1', { 'x-request-id': HOSTILE.c1 })).toBe(200);
    expect(line('get inj1')?.fields.correlationId).toBe('id\\u0085NEL\\u009b31mCSI\\tTAB');
    expectNoInjection(capture.lines());
  });

  it('a 10,000-character correlation id is capped at 256 characters', async () => {
    expect(await rawRequest(base, '/orders/inj2', { 'x-request-id': HOSTILE.long })).toBe(200);
    const id = String(line('get inj2')?.fields.correlationId);
    expect(id).toHaveLength(256);
    expect(id.endsWith('...')).toBe(true);
    expect(capture.lines().every((l) => l.length < 2000)).toBe(true);
  });

  it('CR/LF and ANSI escapes decoded from inbound baggage into a selected field are escaped', async () => {
    const baggage = `userId=${encodeURIComponent(`evil\r\n${HOSTILE.forged}\u001b[31m red`)}`;
    const res = await fetch(`${base}/orders/inj3`, { headers: { 'x-request-id': 'inj-3', baggage } });
    expect(res.status).toBe(200);
    const userId = String(line('get inj3')?.fields.userId);
    expect(userId).toBe(`evil\\r\\n${HOSTILE.forged}\\u001b[31m red`);
    expectNoInjection(capture.lines());
  });

  it('CR/LF and ANSI escapes from a request body set on the context, very long, are escaped and capped', async () => {
    const userId = `x\r\n${HOSTILE.forged}\u001b[2J\u2028${'y'.repeat(5000)}`;
    const res = await fetch(`${base}/orders/login`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'inj-4' }, body: JSON.stringify({ userId }) });
    expect(res.status).toBe(201);
    const logged = String(line('logged in')?.fields.userId);
    expect(logged.startsWith(`x\\r\\n${HOSTILE.forged}\\u001b[2J\\u2028yyy`)).toBe(true);
    expect(logged).toHaveLength(256);
    expectNoInjection(capture.lines());
  });

  it('a correlation id given to run() (e.g. from a queue message) that could not be sent on as a header is refused', () => {
    // It would break every outgoing call that carries it; the library refuses it whatever the validator says.
    expect(() => app.get(ContextService).run(() => undefined, { correlationId: `job\r\n${HOSTILE.forged}` })).toThrow(/is not valid/);
  });

  it('a correlation id given to run() with C1 control characters (header-safe bytes) is escaped in the log', async () => {
    const id = 'job\u009b[2J\u0085x';
    await app.get(ContextService).run(() => new Logger('Job').log('queued'), { correlationId: id });
    const logged = String(line('queued')?.fields.correlationId);
    expect(logged).toBe(sanitizeLogValue(id));
    expect(logged).not.toContain('\u009b');
    expectNoInjection(capture.lines());
  });
});
