/**
 * `nestjs-context/winston`: a winston format adding the context to every entry, with nest-winston
 * or on its own. Peer dependency: `winston`.
 *
 * @module nestjs-context/winston
 */
import winston from 'winston';
import { storage, type ContextRecord } from '../../record/context-record.js';
import type { RegisteredContext } from '../../access/current-context.js';
import { LogFieldReader, type LoggerOwnKeys, type LogFieldsOptions } from '../../logging/fields.js';

export type { LogFields, LogFieldsOptions } from '../../logging/fields.js';

/**
 * Where {@link contextMeta} leaves the context of the log call on the entry (a symbol, so it is never
 * serialized). Registered globally so that the ESM and CommonJS builds agree.
 */
const CALL_CONTEXT = Symbol.for('nestjs-context:winston-call-context');

type Entry = Record<PropertyKey, unknown>;

/**
 * The keys winston and its usual formats and companions write on an entry: `level`, `message`,
 * `timestamp`, `label`, `ms`, `metadata` (formats), `stack`, `error`, `context` (nest-winston,
 * `format.errors()`), `exception` (`true` makes transports without `handleExceptions` drop the
 * entry), `splat`. A context field or id key with one of these names is logged as `ctx_<name>`.
 */
const WINSTON_KEYS: LoggerOwnKeys = {
  logger: 'winston',
  keys: ['level', 'message', 'timestamp', 'label', 'ms', 'metadata', 'stack', 'error', 'context', 'exception', 'splat'],
};

/**
 * A winston format adding `{ correlationId, traceId, spanId, ...selected }` to every entry logged
 * inside a context (entries outside one are unchanged); keys the entry already has (the call's
 * metadata, `defaultMeta`) are kept. A field named like one of winston's own keys (`level`,
 * `message`, `timestamp`, `stack`, `exception`, …) is added as `ctx_<name>`, with a warning.
 * Put it before the format that renders the entry: `format.combine(contextFormat(), format.json())`.
 *
 * The fields come from the context of the `logger.info(...)` call when `defaultMeta` is
 * {@link contextMeta} — always right — and otherwise from the context active while winston formats
 * the entry, which is the same one for the Console and Stream transports but not reliably for
 * transports that can make winston queue entries (File, Http): use `contextMeta` with those.
 * @throws ContextConfigError when an option is unusable.
 * @example
 * WinstonModule.createLogger({
 *   defaultMeta: contextMeta({ service: 'orders' }),
 *   format: format.combine(contextFormat({ contextFields: ['userId'] }), format.json()),
 *   transports: [new transports.Console()],
 * })
 */
export function contextFormat<T extends object = RegisteredContext>(options?: LogFieldsOptions<T>): winston.Logform.Format {
  const reader = new LogFieldReader(options as LogFieldsOptions<never> | undefined, 'contextFormat()', WINSTON_KEYS);
  const addContext = winston.format((info) => {
    const entry = info as Entry;
    try {
      let fields;
      if (CALL_CONTEXT in entry) {
        const record = entry[CALL_CONTEXT] as ContextRecord | null | undefined;
        fields = record === null || record === undefined ? undefined : reader.of(record);
      } else {
        fields = reader.current();
      }
      if (fields !== undefined) {
        for (const key in fields) if (entry[key] === undefined) entry[key] = fields[key];
      }
    } catch {
      // a log entry is never lost to its context fields
    }
    return info;
  });
  return addContext();
}

/**
 * A `defaultMeta` for `winston.createLogger()` / `WinstonModule.createLogger()` that records the
 * context of each log call on the entry, so that {@link contextFormat} adds the right fields even
 * when winston formats the entry later (File and Http transports under load). Adds no visible field
 * itself; `base` is copied as the logger's ordinary default metadata.
 * @example winston.createLogger({ defaultMeta: contextMeta({ service: 'orders' }), format, transports })
 */
export function contextMeta<M extends object = Record<string, never>>(base?: M): M {
  const meta = { ...base } as M;
  Object.defineProperty(meta, CALL_CONTEXT, {
    enumerable: true, // winston copies defaultMeta with Object.assign, which reads enumerable symbol keys
    get: () => storage.getStore() ?? null,
  });
  return meta;
}
