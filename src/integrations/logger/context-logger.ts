import { ConsoleLogger, type ConsoleLoggerOptions, type LogLevel } from '@nestjs/common';
import { LogFieldReader, type LoggerOwnKeys, type LogFields, type LogFieldsOptions } from '../../logging/fields.js';

/** Options of {@link ContextLogger}: Nest's `ConsoleLoggerOptions` plus which context fields to log. */
export interface ContextLoggerOptions extends ConsoleLoggerOptions, LogFieldsOptions {}

/** What `ConsoleLogger.getJsonLogObject()` receives (NestJS 11 and 12). */
interface JsonLogOptions {
  context: string;
  logLevel: LogLevel;
  writeStreamType?: 'stdout' | 'stderr';
  errorStack?: unknown;
  params?: Record<string, unknown>;
  error?: Error;
}

/** What `ConsoleLogger.getJsonLogObject()` returns, with the context fields added as top-level keys. */
interface JsonLogObject {
  [key: string]: unknown;
  level: LogLevel;
  pid: number;
  timestamp: number;
  message: unknown;
  context?: string;
  stack?: unknown;
  error?: Record<string, unknown>;
  params?: Record<string, unknown>;
}

const NEEDS_QUOTES = /[\s"=[\]]/;

/**
 * The keys of `ConsoleLogger`'s JSON lines, which are also the parts of its text lines. A context
 * field or id key with one of these names is logged as `ctx_<name>`, in both modes.
 */
const NEST_KEYS: LoggerOwnKeys = {
  logger: "Nest's ConsoleLogger",
  keys: ['level', 'pid', 'timestamp', 'message', 'context', 'stack', 'error', 'params'],
};

/**
 * Renders fields as `[key=value key=value]` for text lines; values with spaces, quotes, `=` or
 * brackets are quoted. Values are sanitized already, so nothing here can break the line.
 * @internal
 */
export function formatTextFields(fields: LogFields): string {
  let text = '';
  for (const key in fields) {
    const value = fields[key];
    const shown = typeof value === 'string' && (value === '' || NEEDS_QUOTES.test(value)) ? JSON.stringify(value) : String(value);
    text += text === '' ? `${key}=${shown}` : ` ${key}=${shown}`;
  }
  return text === '' ? '' : `[${text}]`;
}

/**
 * Nest's `ConsoleLogger` (text and JSON modes, every option of it) whose lines, when written inside
 * a context, carry the correlation id, trace id and span id — plus the context fields you select
 * with `contextFields`. Lines outside any context are exactly `ConsoleLogger`'s. A field named like
 * one of the logger's own keys (`level`, `pid`, `timestamp`, `message`, `context`, `stack`, `error`,
 * `params`) is logged as `ctx_<name>` in both modes, with a warning when the logger is created.
 *
 * Text: `[Nest] 4242  - 11/23/2025, 10:51:27 PM     LOG [OrdersService] [correlationId=abc traceId=… spanId=…] placing order`
 * JSON: `{"level":"log",…,"message":"placing order","context":"OrdersService","correlationId":"abc","traceId":"…","spanId":"…"}`
 *
 * @example
 * const app = await NestFactory.create(AppModule, { logger: new ContextLogger({ json: true, contextFields: ['userId'] }) });
 */
export class ContextLogger extends ConsoleLogger {
  private readonly fieldReader: LogFieldReader;

  /** A logger without a context name and with `ConsoleLogger`'s defaults; logs no context fields. */
  constructor();
  /** A logger for the given context name (e.g. a class name). */
  constructor(context: string);
  /** A logger with the given options. */
  constructor(options: ContextLoggerOptions);
  /** A logger for the given context name, with the given options. */
  constructor(context: string, options: ContextLoggerOptions);
  constructor(contextOrOptions?: string | ContextLoggerOptions, options?: ContextLoggerOptions) {
    super(...([contextOrOptions, options] as [string, ConsoleLoggerOptions]));
    const own = typeof contextOrOptions === 'string' ? options : (contextOrOptions ?? options);
    this.fieldReader = new LogFieldReader(own, 'ContextLogger', NEST_KEYS);
  }

  /** The fields a line written here and now gets (`undefined` outside any context). */
  protected currentFields(): LogFields | undefined {
    return this.fieldReader.current();
  }

  /** Text mode: the context label, followed by the fields (`[correlationId=… traceId=… spanId=…]`). */
  protected override formatContext(context: string): string {
    const label = super.formatContext(context);
    const fields = this.currentFields();
    if (fields === undefined) return label;
    const text = formatTextFields(fields);
    return text === '' ? label : `${label}${text} `;
  }

  /**
   * JSON mode: the fields as top-level keys. Nest's own keys (`level`, `message`, …) are never
   * replaced: the fields named like them come as `ctx_<name>`, and flattened params keep theirs.
   */
  protected override getJsonLogObject(message: unknown, options: JsonLogOptions): JsonLogObject {
    const object: JsonLogObject = super.getJsonLogObject(message, options);
    const fields = this.currentFields();
    if (fields !== undefined) {
      for (const key in fields) if (!(key in object)) object[key] = fields[key];
    }
    return object;
  }
}
