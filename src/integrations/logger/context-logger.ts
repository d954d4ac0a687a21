import { ConsoleLogger, type ConsoleLoggerOptions, type LogLevel } from '@nestjs/common';
import { LogFieldReader, RENAMED_FIELD_PREFIX, type LoggerOwnKeys, type LogFields, type LogFieldsOptions } from '../../logging/fields.js';
import { instrumentationTraceId } from '../../runtime/internal.js';
import { markInternal } from '../../runtime/internal.js';

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

/** The key `@nestjs/observe`'s logger augmentation writes its trace id under on JSON lines. */
const OBSERVE_JSON_KEY = 'traceId';

let seenFormatMessage: unknown;
let observeAugments = false;

/**
 * Whether `@nestjs/observe` has patched `ConsoleLogger` to add its trace id to every line (its
 * `attachTraceIdToLogs`, on by default): it leaves a `Symbol('observe:logger_patched')` watermark on
 * the prototype. Looked up again only when `formatMessage` was replaced since the last look.
 */
function observeAugmentsConsoleLogger(): boolean {
  const proto = ConsoleLogger.prototype as unknown as Record<PropertyKey, unknown>;
  const current = proto.formatMessage;
  if (current === seenFormatMessage) return observeAugments;
  seenFormatMessage = current;
  observeAugments = Object.getOwnPropertySymbols(proto).some((key) => key.description === 'observe:logger_patched' && proto[key] === true);
  return observeAugments;
}

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
  /** Key of the correlation id on lines (`false`: not logged). */
  private readonly correlationIdKey: string | false;

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
    const keys = own?.keys;
    this.correlationIdKey = keys?.correlationId === undefined ? 'correlationId' : keys.correlationId;
  }

  /**
   * The fields a line written here and now gets (`undefined` outside any context). With
   * `@nestjs/observe`'s logger augmentation on (`Trace ID: …` on text lines, `traceId` on JSON lines),
   * the correlation id is left out when Observe writes the same id on the line, and a field of ours
   * named `traceId` (the W3C trace id) comes as `ctx_traceId` in both modes, so no line carries the
   * request's id twice or two different values under one name.
   */
  protected currentFields(): LogFields | undefined {
    const fields = this.fieldReader.current();
    if (fields === undefined || !observeAugmentsConsoleLogger()) return fields;
    const theirs = instrumentationTraceId();
    if (theirs === undefined) return fields; // Observe writes nothing on this line
    const out: LogFields = {};
    for (const key in fields) {
      const value = fields[key] as LogFields[string];
      if (key === this.correlationIdKey && value === theirs) continue;
      out[key === OBSERVE_JSON_KEY ? `${RENAMED_FIELD_PREFIX}${key}` : key] = value;
    }
    return out;
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

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextLogger);
