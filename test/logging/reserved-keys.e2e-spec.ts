import 'reflect-metadata';
import { Controller, Get, Logger, Module, type Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Logger as PinoNestLogger, LoggerModule } from 'nestjs-pino';
import { hostname } from 'node:os';
import pino from 'pino';
import { pinoHttp } from 'pino-http';
import winston from 'winston';
import { ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { ContextLogger, type ContextLoggerOptions } from '../../src/integrations/logger/index.js';
import { contextMixin, pinoHttpContext } from '../../src/integrations/pino/index.js';
import { contextFormat, contextMeta } from '../../src/integrations/winston/index.js';
import * as fieldsModule from '../../src/logging/fields.js';
import type { LogFieldsOptions } from '../../src/logging/fields.js';
import { bootApp, platforms } from '../utils/platforms.js';
import { captureStdio, captureStream, listen, recordNestLogs, SECRET } from './helpers.js';
import { parseTextLine } from './parse.js';

const { format, transports } = winston;
const HEX32 = /^[0-9a-f]{32}$/;
const REPORTS = 'nestjs-context';

/** A context whose fields are named like the loggers' own keys, holding what a request could put there. */
class ClashContext {
  correlationId: string;
  userId = 'u-1';
  level = 'fatal';
  time = '1999-01-01T00:00:00Z';
  msg = 'forged msg';
  message = 'forged message';
  pid = 666;
  hostname = 'evil-host';
  timestamp = '1999-01-01T00:00:00Z';
  stack = 'forged stack';
  err = 'forged err';
  error = 'forged error';
  req = 'forged req';
  res = 'forged res';
  responseTime = -1;
  context = 'Forged';
  exception = true;
  label = 'forged label';
  params = 'forged params';
  severity = 'forged severity';
  ts = 'forged ts';
  service = 'forged service';
  tenant = 'forged tenant';
  secret = SECRET;

  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }

  get broken(): string {
    throw new Error('getter broke');
  }
}

type Field = keyof ClashContext & string;
const FORGED = new ClashContext({ correlationId: 'x' } as ContextInit) as unknown as Record<string, unknown>;

/** The library's warnings are sent once per process: forget them between tests (no-op where that does not exist yet). */
function forgetWarnings(): void {
  (fieldsModule as { forgetLogFieldWarnings?: () => void }).forgetLogFieldWarnings?.();
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Waits (up to 10 s) for `done`. */
async function settle(done: () => boolean): Promise<void> {
  for (let waited = 0; !done() && waited < 10_000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** How many times `key` is a top-level key of a raw JSON line (a last-wins parse would hide a second one). */
function jsonCount(raw: string, key: string): number {
  let depth = 0;
  let count = 0;
  for (let i = 0; i < raw.length; i++) {
    const char = raw[i];
    if (char === '"') {
      let end = i + 1;
      while (raw[end] !== '"') end += raw[end] === '\\' ? 2 : 1;
      if (depth === 1 && raw[end + 1] === ':' && JSON.parse(raw.slice(i, end + 1)) === key) count++;
      i = end;
    } else if (char === '{' || char === '[') depth++;
    else if (char === '}' || char === ']') depth--;
  }
  return count;
}
const json = (raw: string): Record<string, unknown> => JSON.parse(raw) as Record<string, unknown>;

/** A logger integration as the tests drive it. */
interface Harness {
  name: string;
  /** The logger's own keys on a line with this message, and the value each must have (`undefined`: absent). */
  own(message: string): Record<string, unknown>;
  /** One of its keys, given to `keys.correlationId`. */
  idClash: string;
  /** Whether field values are rendered as text (Nest's text mode). */
  textual: boolean;
  /** A logger with these options: `log` writes one line, `lines` returns the raw lines written so far. */
  make(options: LogFieldsOptions<ClashContext>): { log(message: string): void; lines(): string[] };
  /** The keys and values of a raw line. */
  parse(raw: string): Record<string, unknown>;
  /** How many times `key` is written as a key of the raw line. */
  count(raw: string, key: string): number;
}

const pinoHarness: Harness = {
  name: 'pino contextMixin()',
  own: (msg) => ({ level: 30, time: expect.any(Number), pid: process.pid, hostname: hostname(), msg, err: undefined, req: undefined, res: undefined, responseTime: undefined }),
  idClash: 'msg',
  textual: false,
  make: (options) => {
    const capture = captureStream();
    const logger = pino({ mixin: contextMixin(options) }, capture.stream);
    return { log: (message) => logger.info(message), lines: capture.lines };
  },
  parse: json,
  count: jsonCount,
};

const winstonHarness = (meta: boolean): Harness => ({
  name: `winston contextFormat()${meta ? ' with contextMeta()' : ''}`,
  own: (message) => ({ level: 'info', message, timestamp: expect.stringMatching(/^2\d{3}-/), stack: undefined, exception: undefined, label: undefined, context: undefined }),
  idClash: 'message',
  textual: false,
  make: (options) => {
    const capture = captureStream();
    const logger = winston.createLogger({
      defaultMeta: meta ? contextMeta() : undefined,
      format: format.combine(contextFormat(options), format.timestamp(), format.json()),
      transports: [new transports.Stream({ stream: capture.stream })],
    });
    return { log: (message) => logger.info(message), lines: capture.lines };
  },
  parse: json,
  count: jsonCount,
});

/** A ContextLogger whose output (stdout) is captured while it writes. */
function nestLogger(json: boolean, options: LogFieldsOptions<ClashContext>): { log(message: string): void; lines(): string[] } {
  const logger = new ContextLogger('Clash', { json, colors: false, ...(options as ContextLoggerOptions) });
  const written: string[] = [];
  return {
    log: (message) => {
      const capture = captureStdio();
      try {
        logger.log(message);
      } finally {
        capture.restore();
      }
      written.push(...capture.lines());
    },
    lines: () => written,
  };
}

const NEST_POSITIONAL = ['level', 'pid', 'timestamp', 'message', 'context'];
const nestOwn = (timestamp: unknown) => (message: string) => ({
  level: 'log', pid: process.pid, timestamp, message, context: 'Clash', stack: undefined, error: undefined, params: undefined,
});

const nestJsonHarness: Harness = {
  name: 'ContextLogger, JSON',
  own: nestOwn(expect.any(Number)),
  idClash: 'message',
  textual: false,
  make: (options) => nestLogger(true, options),
  parse: json,
  count: jsonCount,
};

/** The `key=value` fields between brackets of a text line, and its positional parts (which win here). */
function parseText(raw: string): Record<string, unknown> {
  const line = parseTextLine(raw);
  if (line === undefined) throw new Error(`not a Nest text line: ${raw}`);
  const head = /^\[Nest\] (\d+) {2}- (.*?) +(?:LOG|ERROR|WARN|DEBUG|VERBOSE|FATAL) /.exec(raw);
  return { ...line.fields, level: line.level, pid: Number(head?.[1]), timestamp: head?.[2], message: line.message, context: line.context };
}

const nestTextHarness: Harness = {
  name: 'ContextLogger, text',
  own: nestOwn(expect.any(String)),
  idClash: 'message',
  textual: true,
  make: (options) => nestLogger(false, options),
  parse: parseText,
  // Nest writes its own parts positionally; a bracketed `level=` would be a second level on the line
  count: (raw, key) => raw.split(new RegExp(`[[ ]${key}=`)).length - 1 + (NEST_POSITIONAL.includes(key) ? 1 : 0),
};

const harnesses = [pinoHarness, winstonHarness(false), winstonHarness(true), nestJsonHarness, nestTextHarness].map((h) => [h.name, h] as const);

/** Checks a line: the logger's values stand, each own key at most once, the context's values under `ctx_<key>`. */
function expectClean(h: Harness, raw: string, message: string, clashing: readonly string[], correlationId: string): void {
  const line = h.parse(raw);
  const own = h.own(message);
  for (const key of clashing) {
    expect([key, h.count(raw, key)]).toEqual([key, own[key] === undefined ? 0 : 1]);
    expect([key, line[`ctx_${key}`]]).toEqual([key, h.textual ? String(FORGED[key]) : FORGED[key]]);
  }
  expect(Object.fromEntries(Object.keys(own).map((key) => [key, line[key]]))).toEqual(own);
  expect(line).toMatchObject({ correlationId, userId: 'u-1' });
  expect(raw).not.toContain(SECRET);
}

let context: ContextService<ClashContext>;
let failing: ContextService<ClashContext>;
let nest: ReturnType<typeof recordNestLogs>;

beforeAll(async () => {
  const moduleRef = await Test.createTestingModule({ imports: [ContextModule.forRoot(ClashContext)] }).compile();
  context = moduleRef.get(ContextService);
  const failingRef = await Test.createTestingModule({
    imports: [ContextModule.forRoot(ClashContext, { factory: () => { throw new Error('factory broke'); } })],
  }).compile();
  failing = failingRef.get(ContextService);
});
beforeEach(() => {
  forgetWarnings();
  nest = recordNestLogs();
});
afterEach(() => nest.restore());

describe.each(harnesses)('%s: a context field never takes one of the logger\'s own keys', (_name, h) => {
  const clashing = Object.keys(h.own('')) as Field[];

  it('a selected field named like one of its keys is logged as ctx_<name>: the logger\'s value stands, each key once; one warning per field at bootstrap', async () => {
    const logger = h.make({ contextFields: [...clashing, 'userId'] });
    for (const key of clashing) {
      const about = nest.from(REPORTS).filter((r) => r.level === 'warn' && r.message.includes(`"${key}"`) && r.message.includes(`"ctx_${key}"`));
      expect([key, about.length]).toEqual([key, 1]);
    }
    expect(nest.from(REPORTS)).toHaveLength(clashing.length);
    context.run(() => {
      for (let i = 0; i < 5; i++) logger.log(`line ${i}`);
    }, { correlationId: 'clash-1' });
    await tick();
    expect(nest.from(REPORTS)).toHaveLength(clashing.length); // nothing more per line
    expect(logger.lines()).toHaveLength(5);
    logger.lines().forEach((raw, i) => expectClean(h, raw, `line ${i}`, clashing, 'clash-1'));
  });

  it('an id key (keys.correlationId) named like one of its keys is logged as ctx_<name>, with one warning at bootstrap', () => {
    const logger = h.make({ keys: { correlationId: h.idClash } });
    const about = nest.from(REPORTS).filter((r) => r.message.includes('keys.correlationId') && r.message.includes(`"ctx_${h.idClash}"`));
    expect(about).toHaveLength(1);
    context.run(() => logger.log('id line'), { correlationId: 'id-1' });
    const [raw] = logger.lines();
    const line = h.parse(raw!);
    expect(line[`ctx_${h.idClash}`]).toBe('id-1');
    expect(line[h.idClash]).toEqual(h.own('id line')[h.idClash]);
    expect(h.count(raw!, h.idClash)).toBe(1);
    expect(line.traceId).toMatch(HEX32);
  });

  it('a contextFields function returning such keys: renamed on every line, one warning per key however many lines', async () => {
    const picked = [...clashing, 'userId'] as const;
    const logger = h.make({ contextFields: (ctx) => Object.fromEntries(picked.map((key) => [key, ctx[key]])) });
    expect(nest.from(REPORTS)).toHaveLength(0); // a function's keys are only known when it runs
    context.run(() => {
      for (let i = 0; i < 5; i++) logger.log(`fn ${i}`);
    }, { correlationId: 'fn-1' });
    await tick();
    for (const key of clashing) {
      const about = nest.from(REPORTS).filter((r) => r.level === 'warn' && r.message.includes(`"${key}"`) && r.message.includes(`"ctx_${key}"`));
      expect([key, about.length]).toEqual([key, 1]);
    }
    expect(nest.from(REPORTS)).toHaveLength(clashing.length);
    expect(logger.lines()).toHaveLength(5);
    logger.lines().forEach((raw, i) => expectClean(h, raw, `fn ${i}`, clashing, 'fn-1'));
  });

  it('a throwing contextFields function or getter: every line is written with its ids, each error reported once', async () => {
    const throwing = h.make({ contextFields: () => { throw new Error('serializer broke'); } });
    const getter = h.make({ contextFields: ['broken', 'userId'] });
    context.run(() => {
      for (let i = 0; i < 5; i++) {
        throwing.log(`t ${i}`);
        getter.log(`g ${i}`);
      }
    }, { correlationId: 'throw-1' });
    await tick();
    expect(throwing.lines()).toHaveLength(5);
    expect(getter.lines()).toHaveLength(5);
    for (const raw of throwing.lines()) {
      const line = h.parse(raw);
      expect(line.correlationId).toBe('throw-1');
      expect(line.traceId).toMatch(HEX32);
      expect(line).not.toHaveProperty('userId');
    }
    for (const raw of getter.lines()) {
      const line = h.parse(raw);
      expect(line).toMatchObject({ correlationId: 'throw-1', userId: 'u-1' });
      expect(line).not.toHaveProperty('broken');
    }
    const reports = nest.from(REPORTS);
    expect(reports.filter((r) => r.message.includes('serializer broke'))).toHaveLength(1);
    expect(reports.filter((r) => r.message.includes('getter broke') && r.message.includes('"broken"'))).toHaveLength(1);
    expect(reports).toHaveLength(2);
  });

  it('a context factory that throws: the lines are still written, with their ids', () => {
    const logger = h.make({ contextFields: ['userId'] });
    failing.run(() => {
      for (let i = 0; i < 3; i++) logger.log(`f ${i}`);
    }, { correlationId: 'fac-1' });
    expect(logger.lines()).toHaveLength(3);
    for (const raw of logger.lines()) {
      const line = h.parse(raw);
      expect(line.correlationId).toBe('fac-1');
      expect(line.traceId).toMatch(HEX32);
      expect(line).not.toHaveProperty('userId');
    }
  });
});

describe('pino: the keys a logger is configured with are read from the logger writing the line', () => {
  it('messageKey, errorKey, formatters.level, timestamp, base and child bindings: renamed, each key once, one warning per key', async () => {
    const capture = captureStream();
    const root = pino(
      {
        messageKey: 'message',
        errorKey: 'error',
        formatters: { level: (label) => ({ severity: label }) },
        timestamp: () => ',"ts":1',
        base: { service: 'orders' },
        mixin: contextMixin<ClashContext>({ contextFields: ['message', 'error', 'severity', 'ts', 'service', 'tenant', 'userId'] }),
      },
      capture.stream,
    );
    const logger = root.child({ tenant: 't-real' });
    context.run(() => {
      for (let i = 0; i < 3; i++) logger.info(`cfg ${i}`);
      logger.error(new Error('real error'), 'failed');
    }, { correlationId: 'cfg-1' });
    await tick();
    const lines = capture.lines();
    expect(lines).toHaveLength(4);
    lines.forEach((raw, i) => {
      const line = json(raw);
      const own: Record<string, unknown> = { message: i < 3 ? `cfg ${i}` : 'failed', severity: i < 3 ? 'info' : 'error', ts: 1, service: 'orders', tenant: 't-real' };
      for (const key of Object.keys(own)) {
        expect([key, jsonCount(raw, key), line[key]]).toEqual([key, 1, own[key]]);
        expect(line[`ctx_${key}`]).toBe(FORGED[key]);
      }
      expect(jsonCount(raw, 'error')).toBe(i < 3 ? 0 : 1);
      expect(line.ctx_error).toBe('forged error');
      if (i === 3) expect(line.error).toMatchObject({ message: 'real error' });
      expect(line).toMatchObject({ correlationId: 'cfg-1', userId: 'u-1' });
    });
    for (const key of ['message', 'error', 'severity', 'ts', 'service', 'tenant']) {
      const about = nest.from(REPORTS).filter((r) => r.level === 'warn' && r.message.includes(`"${key}"`) && r.message.includes(`"ctx_${key}"`));
      expect([key, about.length]).toEqual([key, 1]);
    }
  });
});

const PINO_HTTP_FIELDS: Field[] = ['level', 'time', 'pid', 'hostname', 'msg', 'err', 'req', 'res', 'responseTime'];

/** Logs one line through Nest's Logger inside the request. */
@Controller('clash')
class ClashController {
  private readonly logger = new Logger('Clash');

  @Get()
  get() {
    this.logger.log('app line');
    return {};
  }
}

function appModule(imports: (Type | ReturnType<typeof LoggerModule.forRoot>)[]): Type {
  @Module({ imports: [ContextModule.forRoot(ClashContext), ...imports], controllers: [ClashController] })
  class ClashApp {}
  return ClashApp;
}

describe('nestjs-pino with pinoHttpContext()', () => {
  it('app lines and "request completed": pino\'s and pino-http\'s keys keep their values, each once; the context\'s under ctx_<name>; one warning per field at bootstrap', async () => {
    const capture = captureStream();
    const options = pinoHttpContext<ClashContext>({ contextFields: [...PINO_HTTP_FIELDS, 'userId'] });
    for (const key of PINO_HTTP_FIELDS) {
      const about = nest.from(REPORTS).filter((r) => r.level === 'warn' && r.message.includes(`"${key}"`) && r.message.includes(`"ctx_${key}"`));
      expect([key, about.length]).toEqual([key, 1]);
    }
    const module = appModule([LoggerModule.forRoot({ forRoutes: ['{*splat}'], pinoHttp: { ...options, stream: capture.stream, level: 'info' } })]);
    const app = await bootApp(module, platforms[0][1], (a) => a.useLogger(a.get(PinoNestLogger)));
    const base = await listen(app);
    for (let i = 0; i < 3; i++) expect((await fetch(`${base}/clash`, { headers: { 'x-request-id': `http-${i}` } })).status).toBe(200);
    await settle(() => capture.lines().filter((l) => l.includes('"request completed"')).length === 3);
    await app.close();
    const lines = capture.lines().filter((l) => l.includes('"correlationId":"http-'));
    const app_ = lines.filter((l) => json(l).msg === 'app line');
    const completed = lines.filter((l) => json(l).msg === 'request completed');
    expect([app_.length, completed.length]).toEqual([3, 3]);
    const base_ = { level: 30, time: expect.any(Number), pid: process.pid, hostname: hostname(), err: undefined, req: expect.objectContaining({ method: 'GET', url: '/clash' }) };
    const owns: [string, Record<string, unknown>][] = [
      ...app_.map((raw) => [raw, { ...base_, msg: 'app line', res: undefined, responseTime: undefined }] as [string, Record<string, unknown>]),
      ...completed.map((raw) => [raw, { ...base_, msg: 'request completed', res: expect.objectContaining({ statusCode: 200 }), responseTime: expect.any(Number) }] as [string, Record<string, unknown>]),
    ];
    for (const [raw, own] of owns) {
      const line = json(raw);
      for (const key of PINO_HTTP_FIELDS) {
        expect([key, jsonCount(raw, key)]).toEqual([key, own[key] === undefined ? 0 : 1]);
        expect([key, line[`ctx_${key}`]]).toEqual([key, FORGED[key]]);
      }
      expect(Object.fromEntries(Object.keys(own).map((key) => [key, line[key]]))).toEqual(own);
      expect(line.userId).toBe('u-1');
      expect(jsonCount(raw, 'correlationId')).toBe(1);
    }
  });
});

describe('pino-http with pinoHttpContext() and a throwing contextFields function', () => {
  it('every "request completed" line is written with its ids; the error is reported once', async () => {
    const capture = captureStream();
    const middleware = pinoHttp({ ...pinoHttpContext({ contextFields: () => { throw new Error('http serializer broke'); } }), stream: capture.stream });
    const app = await bootApp(appModule([]), platforms[0][1], (a) => a.use(middleware));
    const base = await listen(app);
    const recorder = recordNestLogs(); // booting with `logger: false` turned Nest's logger off
    try {
      for (let i = 0; i < 5; i++) expect((await fetch(`${base}/clash`, { headers: { 'x-request-id': `thr-${i}` } })).status).toBe(200);
      await settle(() => capture.lines().filter((l) => l.includes('"request completed"')).length === 5);
      await tick();
      await app.close();
      const completed = capture.lines().map(json).filter((l) => l.msg === 'request completed');
      expect(completed.map((l) => l.correlationId)).toEqual(['thr-0', 'thr-1', 'thr-2', 'thr-3', 'thr-4']);
      for (const line of completed) expect(line.traceId).toMatch(HEX32);
      expect(recorder.from(REPORTS).filter((r) => r.message.includes('http serializer broke'))).toHaveLength(1);
    } finally {
      recorder.restore();
    }
  });
});

describe('reservedKeys: the keys of your own logger setup', () => {
  it('winston: a defaultMeta key listed there keeps its value; the context field comes as ctx_<name>, with one warning at bootstrap', () => {
    const capture = captureStream();
    const logger = winston.createLogger({
      defaultMeta: contextMeta({ service: 'orders' }),
      format: format.combine(contextFormat<ClashContext>({ contextFields: ['service', 'userId'], reservedKeys: ['service'] }), format.json()),
      transports: [new transports.Stream({ stream: capture.stream })],
    });
    expect(nest.from(REPORTS).filter((r) => r.message.includes('"service"') && r.message.includes('"ctx_service"'))).toHaveLength(1);
    context.run(() => logger.info('meta'), { correlationId: 'meta-1' });
    const [raw] = capture.lines();
    expect(jsonCount(raw!, 'service')).toBe(1);
    expect(json(raw!)).toMatchObject({ service: 'orders', ctx_service: 'forged service', userId: 'u-1', correlationId: 'meta-1' });
  });

  it('createLogFields(): the keys listed there are renamed, others are not', () => {
    const reader = fieldsModule.createLogFields<ClashContext>({ contextFields: ['level', 'service', 'userId'], reservedKeys: ['service'], keys: { spanId: 'service' } });
    context.run(() => {
      expect(reader.current()).toEqual({ correlationId: 'own-1', traceId: expect.stringMatching(HEX32), ctx_service: expect.stringMatching(/^[0-9a-f]{16}$/), ctx_ctx_service: 'forged service', level: 'fatal', userId: 'u-1' });
    }, { correlationId: 'own-1' });
  });

  it.each([[['']], ['service'], [[1]]])('rejects reservedKeys %j, naming the option', (reservedKeys) => {
    expect(() => fieldsModule.createLogFields({ reservedKeys } as never)).toThrow(/createLogFields\(\): option reservedKeys must be a list of key names/);
  });
});
