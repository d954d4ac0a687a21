import {
  Body,
  Controller,
  Get,
  Headers,
  Injectable,
  Logger,
  Module,
  Param,
  Post,
  type DynamicModule,
  type INestApplication,
  type LoggerService,
  type Type,
} from '@nestjs/common';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { ContextModule, ContextService, type ContextInit, type ContextModuleOptions } from '../../src/index.js';

/** The user's context of the logging suites: an id, fields to select, and a secret that must never be logged. */
export class LogContext {
  correlationId: string;
  userId?: string;
  tenant?: string;
  secret = 'top-secret-token';

  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

export const SECRET = 'top-secret-token';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const jitter = () => Math.floor(Math.random() * 10);

@Injectable()
export class OrdersService {
  private readonly logger = new Logger('OrdersService');

  async place(id: string): Promise<void> {
    await sleep(jitter());
    this.logger.log(`placing order ${id}`);
  }
}

/** Logs through Nest's `Logger` (so through whatever logger the app uses) at several async points. */
@Controller('orders')
export class OrdersController {
  private readonly logger = new Logger('OrdersController');

  constructor(
    private readonly orders: OrdersService,
    private readonly context: ContextService<LogContext>,
  ) {}

  @Get(':id')
  async get(@Param('id') id: string, @Headers('x-user') user?: string) {
    if (user !== undefined) this.context.get().userId = user;
    this.logger.log(`get ${id}`);
    await this.orders.place(id);
    return { correlationId: this.context.correlationId, traceId: this.context.trace?.traceId, spanId: this.context.trace?.spanId };
  }

  @Get(':id/fail')
  async fail(@Param('id') id: string, @Headers('x-user') user?: string) {
    if (user !== undefined) this.context.get().userId = user;
    this.logger.log(`failing ${id}`);
    await sleep(1);
    throw new Error(`kaboom ${id}`);
  }

  @Post('login')
  login(@Body() body: { userId?: string }) {
    this.context.get().userId = body.userId;
    this.logger.log('logged in');
    return { correlationId: this.context.correlationId };
  }
}

/** The app of the logging suites: ContextModule with `LogContext`, the orders controller, plus `imports`. */
export function createLoggingModule(
  options: ContextModuleOptions<LogContext> & { interceptor?: boolean } = {},
  imports: (Type | DynamicModule)[] = [],
  controllers: Type[] = [],
): Type {
  @Module({
    imports: [ContextModule.forRoot(LogContext, options), ...imports],
    controllers: [OrdersController, ...controllers],
    providers: [OrdersService],
  })
  class LoggingModule {}
  return LoggingModule;
}

/** Starts listening on a free local port and returns the base URL. */
export async function listen(app: INestApplication): Promise<string> {
  await app.listen(0, '127.0.0.1');
  return (await app.getUrl()).replace('[::1]', '127.0.0.1');
}

/** Collected output: whole chunks as written, and the text split into lines. */
export interface Captured {
  /** Every line written so far (split on `\n`; a value with a raw newline would show as two lines). */
  lines(): string[];
  /** Forgets what was captured so far. */
  clear(): void;
}

/** A real destination stream (for pino and winston) that keeps what was written. */
export function captureStream(): Captured & { stream: Writable } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
      callback();
    },
  });
  return {
    stream,
    lines: () => text.split('\n').filter((line) => line !== ''),
    clear: () => {
      text = '';
    },
  };
}

/**
 * Captures what is written to the process' stdout and stderr (where Nest's `ConsoleLogger` writes)
 * until `restore()`; nothing is passed through.
 */
export function captureStdio(): Captured & { restore(): void } {
  let text = '';
  const out = process.stdout.write;
  const err = process.stderr.write;
  const write = function (chunk: string | Uint8Array, encoding?: unknown, callback?: unknown): boolean {
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const done = typeof encoding === 'function' ? encoding : callback;
    if (typeof done === 'function') (done as () => void)();
    return true;
  } as typeof process.stdout.write;
  process.stdout.write = write;
  process.stderr.write = write;
  return {
    lines: () => text.split('\n').filter((line) => line !== ''),
    clear: () => {
      text = '';
    },
    restore: () => {
      process.stdout.write = out;
      process.stderr.write = err;
    },
  };
}

/**
 * Sends one raw HTTP/1.1 request (bytes as given, latin1) and resolves with the status code, so
 * tests can send header bytes that HTTP clients refuse to send (C1 controls such as NEL and CSI).
 */
export function rawRequest(base: string, path: string, headers: Record<string, string>): Promise<number> {
  const { hostname, port } = new URL(base);
  const head = [`GET ${path} HTTP/1.1`, `Host: ${hostname}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), 'Connection: close', '', ''].join('\r\n');
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(Buffer.from(head, 'latin1'))); // no half-close: Node would abort the request
    let data = '';
    socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
  });
}

/** Raw control characters (besides none at all) that must never appear in a log line. */
export const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/;

/** Hostile values for log-injection tests. */
export const HOSTILE = {
  /** What an attacker would like to appear as a line of its own. */
  forged: '[Nest] 666  - 01/01/2025, 0:00:00 AM     LOG [Forged] user admin logged in',
  /** C1 controls that pass Node's HTTP parser: NEL (a newline for some viewers), CSI (8-bit ANSI). */
  c1: 'id\u0085NEL\u009b31mCSI\tTAB',
  long: 'L'.repeat(10_000),
};

/** One call received by {@link recordNestLogs}' logger. */
export interface NestLogRecord {
  level: 'log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal';
  message: string;
  /** The `Logger` context the call was made with (its last argument), e.g. `'nestjs-context'`. */
  context: unknown;
}

/**
 * Makes a recording logger Nest's static logger (`Logger.overrideLogger`), so what the library
 * reports through `new Logger(...)` can be read back; `restore()` puts the previous one back.
 */
export function recordNestLogs(): { records: NestLogRecord[]; from(context: string): NestLogRecord[]; restore(): void } {
  const holder = Logger as unknown as { staticInstanceRef?: LoggerService };
  const previous = holder.staticInstanceRef;
  const records: NestLogRecord[] = [];
  const record = (level: NestLogRecord['level']) => (message: unknown, ...params: unknown[]) => {
    records.push({ level, message: String(message), context: params[params.length - 1] });
  };
  const recorder: LoggerService = {
    log: record('log'),
    error: record('error'),
    warn: record('warn'),
    debug: record('debug'),
    verbose: record('verbose'),
    fatal: record('fatal'),
  };
  Logger.overrideLogger(recorder);
  return {
    records,
    from: (context) => records.filter((r) => r.context === context),
    restore: () => {
      holder.staticInstanceRef = previous;
    },
  };
}
