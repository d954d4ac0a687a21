import { Logger } from '@nestjs/common';
import { ContextConfigError, describe } from '../errors.js';
import { recordOfRequest, storage, type ContextRecord } from '../record/context-record.js';
import type { RegisteredContext } from '../access/current-context.js';
import type { TraceInfo } from '../interfaces/trace-info.interface.js';
import { traceSourceOf } from '../record/trace-source.js';
import { DEFAULT_MAX_LOG_VALUE_LENGTH, MIN_MAX_LOG_VALUE_LENGTH, sanitizeLogValue } from './sanitize.js';

/** A value on a log line: strings are already sanitized and capped. */
export type LogFieldValue = string | number | boolean;

/** The fields one log line gets from the context: the ids first, then the selected context fields. */
export type LogFields = Record<string, LogFieldValue>;

/**
 * Names of the id fields on log lines, or `false` to leave one out. Defaults: `correlationId`,
 * `traceId`, `spanId`. Use e.g. `{ traceId: 'trace_id', spanId: 'span_id' }` for OpenTelemetry naming.
 */
export interface LogFieldKeys {
  /** Key of the correlation id. Default: `'correlationId'`. */
  correlationId?: string | false;
  /** Key of the W3C trace id (32 hex digits). Default: `'traceId'`. */
  traceId?: string | false;
  /** Key of this hop's span id (16 hex digits). Default: `'spanId'`. */
  spanId?: string | false;
}

/**
 * Which fields of the user's context go on log lines: a list of field names, or a function that
 * returns a flat object of the fields to log (a serializer).
 */
export type ContextFieldSelector<T extends object> =
  | readonly (keyof T & string)[]
  | ((context: T) => Readonly<Record<string, unknown>> | undefined);

/**
 * What the logging integrations put on each line logged inside a context. Shared by `ContextLogger`,
 * the pino integration and the winston format.
 * @typeParam T the user's context class (defaults to the one registered through `ContextRegistry`).
 */
export interface LogFieldsOptions<T extends object = RegisteredContext> {
  /**
   * Fields of your context to add to every line, by name or through a serializer. Default: none —
   * nothing of your context reaches the logs unless you name it here, so secrets stay out. Naming
   * a field makes the first line of a request build the context if nothing did before.
   * Values: strings (sanitized and capped), finite numbers and booleans as they are, dates as ISO
   * text, other objects as their JSON text (capped); `null`/`undefined` fields are left out.
   */
  contextFields?: ContextFieldSelector<T>;
  /** Names of the id fields; see {@link LogFieldKeys}. */
  keys?: LogFieldKeys;
  /**
   * Longest string value on a line, after escaping control characters; longer values are cut and
   * end in `...`. Default: 256 (at least 8).
   */
  maxLength?: number;
  /**
   * More keys your logger writes itself, besides those the integration knows already (pino's,
   * pino-http's, winston's, Nest's — see {@link RENAMED_FIELD_PREFIX}): e.g. a winston `defaultMeta`
   * key, pino-http's `customAttributeKeys`, a key your own format adds. A context field or id key
   * with one of these names is logged as `ctx_<name>` instead, with a warning.
   */
  reservedKeys?: readonly string[];
}

/**
 * What a context field or id key named like one of the logger's own keys (`level`, `time`, `msg`,
 * `message`, `timestamp`, ...) is prefixed with on the line: `ctx_level`. Such a field is renamed
 * rather than dropped, so nothing of the context is lost, and never written under the logger's
 * key, so a request cannot forge the level, time or message of a line (pino writes a duplicate
 * key, which a last-wins JSON parser reads; winston and Nest would lose the field). The prefix is
 * flat (`_`, not `.`): Elasticsearch, OpenSearch, Loki or Datadog do not expand it into a `ctx`
 * object that could clash with a field of that name; and it does not start with `context`, the key
 * Nest and nest-winston put the logger's context label under. A name that is taken as well gets
 * the prefix again (`ctx_ctx_level`). A warning names each renamed field once per process: at
 * bootstrap for listed fields and `keys`, at the first line for a function's keys.
 */
export const RENAMED_FIELD_PREFIX = 'ctx_';

/** Reads the log fields of the active context, or of the context attached to a request. */
export interface LogFieldSource {
  /** The fields of the active context, or `undefined` outside any context. Never throws. */
  current(): LogFields | undefined;
  /**
   * The fields of the context of an HTTP request — Node's `IncomingMessage`, Express' request or
   * Fastify's request — whether or not that context is active here (e.g. in a `finish` listener).
   * `undefined` when the request has no context (yet). Never throws.
   */
  forRequest(request: unknown): LogFields | undefined;
}

/**
 * The keys a logger writes itself, which no context field may take, as an integration declares them.
 * @internal
 */
export interface LoggerOwnKeys {
  /** The logger as warnings name it, e.g. `'pino'`. */
  readonly logger: string;
  /** Its keys. */
  readonly keys: readonly string[];
}

type Picker = (context: object) => Readonly<Record<string, unknown>> | undefined;

const KEY = /^[A-Za-z_$][A-Za-z0-9_$.-]{0,63}$/;
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
const UNSAFE_KEY_CHAR = /[^A-Za-z0-9_$.-]/;
const UNSAFE_KEY_CHARS = new RegExp(UNSAFE_KEY_CHAR.source, 'g');

/** The context record attached to an HTTP request, or `undefined` (see `recordOfRequest`). @internal */
export function recordOf(request: unknown): ContextRecord | undefined {
  return recordOfRequest(request);
}

/**
 * Turns a context field's value into a log value: `undefined` for values left out.
 * @internal
 */
export function toLogValue(value: unknown, maxLength: number): LogFieldValue | undefined {
  switch (typeof value) {
    case 'string':
      return sanitizeLogValue(value, maxLength);
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'bigint':
      return sanitizeLogValue(value.toString(), maxLength);
    case 'object': {
      if (value === null) return undefined;
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value.toISOString();
      try {
        const json = JSON.stringify(value);
        return json === undefined ? undefined : sanitizeLogValue(json, maxLength);
      } catch {
        return undefined; // circular or throwing toJSON(): leave the field out rather than break logging
      }
    }
    default:
      return undefined; // functions, symbols, undefined
  }
}

function fail(where: string, what: string, fix: string): never {
  throw new ContextConfigError(`${where}: ${what}. ${fix}`);
}

function resolveKey(value: unknown, name: keyof LogFieldKeys, where: string): string | undefined {
  if (value === undefined) return name;
  if (value === false) return undefined;
  if (typeof value !== 'string' || !KEY.test(value) || FORBIDDEN_KEYS.has(value)) {
    fail(where, `option keys.${name} must be a field name or false, got ${describe(value)}`, `Use e.g. '${name}' or 'trace_id'.`);
  }
  return value;
}

/** `key` with the prefix, repeated while the result is `taken`. */
function renameKey(key: string, taken: (key: string) => boolean): string {
  let out = RENAMED_FIELD_PREFIX + key;
  while (taken(out)) out = RENAMED_FIELD_PREFIX + out;
  return out;
}

const REPORTER = 'nestjs-context';
const sent = new Set<string>();

/**
 * Sends a warning or an error through Nest's `Logger` (context `'nestjs-context'`), so it reaches
 * the app's logger. `later`: from the next microtask, for reports made while a line is being
 * written (the logger must not be entered again from inside itself). Never throws.
 */
function report(level: 'warn' | 'error', message: string, later: boolean, stack?: string): void {
  const send = (): void => {
    try {
      const logger = new Logger(REPORTER);
      if (level === 'error') logger.error(message, stack);
      else logger.warn(message);
    } catch {
      // a report never breaks logging
    }
  };
  if (later) queueMicrotask(send);
  else send();
}

/** {@link report}s a warning the first time this process sees `message`. */
function warnOnce(message: string, later: boolean): void {
  if (sent.has(message)) return;
  sent.add(message);
  report('warn', message, later);
}

/**
 * Forgets which warnings were sent, so the next ones are sent again (for tests).
 * @internal
 */
export function forgetLogFieldWarnings(): void {
  sent.clear();
}

function describeError(error: unknown): { text: string; stack: string | undefined } {
  try {
    const text = error instanceof Error ? `${error.name}: ${error.message}` : `a non-error value (${describe(error)})`;
    const stack = error instanceof Error && typeof error.stack === 'string' ? error.stack : undefined;
    return { text: sanitizeLogValue(text, 300), stack };
  } catch {
    return { text: 'an error that cannot be shown', stack: undefined };
  }
}

/** How warnings name each id, and the key they suggest instead. */
const ID_NAMES: Readonly<Record<keyof LogFieldKeys, readonly [name: string, suggested: string]>> = {
  correlationId: ['correlation id', 'correlation_id'],
  traceId: ['trace id', 'trace_id'],
  spanId: ['span id', 'span_id'],
};

/**
 * The one implementation behind every logging integration: validates the options once, then reads
 * the fields of a record with as little work per line as possible (no context is built unless
 * `contextFields` asks for it; reading the trace never builds it).
 * @internal
 */
export class LogFieldReader implements LogFieldSource {
  /** Key of the correlation id, or `undefined` when left out. */
  readonly correlationIdKey: string | undefined;
  /** Key of the trace id, or `undefined` when left out. */
  readonly traceIdKey: string | undefined;
  /** Key of the span id, or `undefined` when left out. */
  readonly spanIdKey: string | undefined;
  /** Longest string value. */
  readonly maxLength: number;
  /** Whether any context field is selected. */
  readonly selects: boolean;
  /** Selected fields: the context's field name, and the key it is logged under. */
  private readonly names: readonly (readonly [name: string, key: string])[] | undefined;
  private readonly picker: Picker | undefined;
  /** The id keys (as logged); a context field never takes one. */
  private readonly reserved: ReadonlySet<string>;
  /** The logger's own keys: the integration's and `reservedKeys`. */
  private readonly own: ReadonlySet<string>;
  private readonly logger: string;
  private readonly where: string;
  /** Keys of the serializer's results renamed so far, and what they became. */
  private readonly renamed = new Map<string, string>();
  /** Failures of the user's code (the serializer, a getter) reported so far by this reader. */
  private readonly failures = new Set<string>();

  /**
   * @param where names the caller in configuration errors and warnings, e.g. `'ContextLogger'`.
   * @param loggerKeys the keys the integration's logger writes itself.
   */
  constructor(options: LogFieldsOptions<never> | undefined, where: string, loggerKeys?: LoggerOwnKeys) {
    if (options === undefined || options === null) options = {};
    if (typeof options !== 'object') fail(where, `the options must be an object, got ${describe(options)}`, 'Pass an options object or leave it out.');
    this.where = where;
    this.logger = loggerKeys?.logger ?? 'your logger';
    const extra: unknown = options.reservedKeys ?? [];
    if (!Array.isArray(extra) || !extra.every((key) => typeof key === 'string' && key !== '')) {
      fail(where, `option reservedKeys must be a list of key names, got ${describe(extra)}`, `Use e.g. ['service'] or leave it out.`);
    }
    const own = new Set<string>([...(loggerKeys?.keys ?? []), ...(extra as string[])]);
    this.own = own;

    const keys: unknown = options.keys ?? {};
    if (keys === null || typeof keys !== 'object') {
      fail(where, `option keys must be an object, got ${describe(keys)}`, `Use e.g. { traceId: 'trace_id' }.`);
    }
    const k = keys as LogFieldKeys;
    const wanted = {
      correlationId: resolveKey(k.correlationId, 'correlationId', where),
      traceId: resolveKey(k.traceId, 'traceId', where),
      spanId: resolveKey(k.spanId, 'spanId', where),
    };
    const ids = Object.values(wanted).filter((key): key is string => key !== undefined);
    if (new Set(ids).size !== ids.length) fail(where, `option keys names one field twice (${ids.join(', ')})`, 'Give each id its own key.');
    const taken = new Set<string>(ids);
    const idKey = (name: keyof LogFieldKeys): string | undefined => {
      const key = wanted[name];
      if (key === undefined || !own.has(key)) return key;
      const renamed = renameKey(key, (candidate) => own.has(candidate) || taken.has(candidate));
      taken.add(renamed);
      warnOnce(
        `${where}: keys.${name} is "${key}", a key ${this.logger} writes itself, so the ${ID_NAMES[name][0]} is logged as "${renamed}" ` +
          `(a second "${key}" key on the line could pass for the logger's own). Choose another key, e.g. keys: { ${name}: '${ID_NAMES[name][1]}' }.`,
        false,
      );
      return renamed;
    };
    this.correlationIdKey = idKey('correlationId');
    this.traceIdKey = idKey('traceId');
    this.spanIdKey = idKey('spanId');
    this.reserved = new Set([this.correlationIdKey, this.traceIdKey, this.spanIdKey].filter((key): key is string => key !== undefined));

    const maxLength: unknown = options.maxLength ?? DEFAULT_MAX_LOG_VALUE_LENGTH;
    if (typeof maxLength !== 'number' || !Number.isInteger(maxLength) || maxLength < MIN_MAX_LOG_VALUE_LENGTH) {
      fail(where, `option maxLength must be an integer of at least ${MIN_MAX_LOG_VALUE_LENGTH}, got ${describe(maxLength)}`, 'Leave it out for the default (256).');
    }
    this.maxLength = maxLength;

    const selector: unknown = options.contextFields;
    if (typeof selector === 'function') {
      this.picker = selector as Picker;
    } else if (Array.isArray(selector)) {
      for (const name of selector as unknown[]) {
        if (typeof name !== 'string' || name === '' || FORBIDDEN_KEYS.has(name)) {
          fail(where, `option contextFields names an unusable field: ${describe(name)}`, 'List ordinary fields of your context class, e.g. [\'userId\'].');
        }
      }
      const names = [...new Set(selector as string[])].filter((name) => !this.reserved.has(name));
      const used = new Set<string>([...this.reserved, ...names]);
      const pairs = names.map((name): readonly [string, string] => {
        if (!own.has(name)) return [name, name];
        const key = renameKey(name, (candidate) => own.has(candidate) || used.has(candidate));
        used.add(key);
        warnOnce(
          `${where}: the context field "${name}" has the name of a key ${this.logger} writes itself, so it is logged as "${key}" ` +
            `(a second "${name}" key on the line could pass for the logger's own). Rename the field, or log it under another ` +
            `name with a contextFields function, e.g. (ctx) => ({ app_${name}: ctx.${name} }).`,
          false,
        );
        return [name, key];
      });
      this.names = pairs.length > 0 ? Object.freeze(pairs) : undefined;
    } else if (selector !== undefined) {
      fail(
        where,
        `option contextFields must be a list of field names or a function of the context, got ${describe(selector)}`,
        `Use e.g. ['userId', 'tenantId'] or (ctx) => ({ userId: ctx.userId }).`,
      );
    }
    this.selects = this.names !== undefined || this.picker !== undefined;
  }

  current(): LogFields | undefined {
    const record = storage.getStore();
    return record === undefined ? undefined : this.of(record);
  }

  forRequest(request: unknown): LogFields | undefined {
    const record = recordOf(request);
    return record === undefined ? undefined : this.of(record);
  }

  /** All fields of a record: ids, then the selected context fields. A fresh object. */
  of(record: ContextRecord): LogFields {
    const out = this.ids(record);
    if (this.selects) this.addSelected(record, out);
    return out;
  }

  /** The id fields only (fixed for the record's lifetime, unless a trace source gives the active span's). A fresh object. */
  ids(record: ContextRecord): LogFields {
    const out: LogFields = {};
    if (this.correlationIdKey !== undefined) out[this.correlationIdKey] = sanitizeLogValue(record.correlationId, this.maxLength);
    if (this.traceIdKey !== undefined || this.spanIdKey !== undefined) {
      const trace = traceOf(record);
      if (trace !== undefined) {
        if (this.traceIdKey !== undefined) out[this.traceIdKey] = sanitizeLogValue(trace.traceId, this.maxLength);
        if (this.spanIdKey !== undefined) out[this.spanIdKey] = sanitizeLogValue(trace.spanId, this.maxLength);
      }
    }
    return out;
  }

  /** The selected context fields only, or `undefined` when none are selected or none have a value. */
  selected(record: ContextRecord): LogFields | undefined {
    if (!this.selects) return undefined;
    const out: LogFields = {};
    this.addSelected(record, out);
    for (const _ in out) return out;
    return undefined;
  }

  /**
   * `fields` with each key that the logger writing the line has too (`loggerKeys`, e.g. read from a
   * pino logger instance) renamed with {@link RENAMED_FIELD_PREFIX}; `fields` itself when none is.
   * Warns once per key per process (not for the id keys, which a logger bound to another
   * request's ids has legitimately).
   */
  avoid(fields: LogFields, loggerKeys: ReadonlySet<string>, logger: string): LogFields {
    let clash = false;
    for (const key in fields) {
      if (loggerKeys.has(key)) {
        clash = true;
        break;
      }
    }
    if (!clash) return fields;
    const out: LogFields = {};
    for (const key in fields) {
      if (!loggerKeys.has(key)) {
        out[key] = fields[key] as LogFieldValue;
        continue;
      }
      const renamed = renameKey(key, (candidate) => loggerKeys.has(candidate) || Object.hasOwn(fields, candidate) || Object.hasOwn(out, candidate));
      out[renamed] = fields[key] as LogFieldValue;
      if (!this.reserved.has(key)) {
        warnOnce(
          `${this.where}: the context field "${key}" has the name of a key of ${logger}, so it is logged as "${renamed}" there ` +
            `(a second "${key}" key on the line could pass for the logger's own). Rename the field, or that key of the logger.`,
          true,
        );
      }
    }
    return out;
  }

  private addSelected(record: ContextRecord, out: LogFields): void {
    let context: object;
    try {
      context = record.context; // builds it on first use; a failed or half-built context adds nothing
    } catch {
      return;
    }
    if (this.names !== undefined) {
      const source = context as Record<string, unknown>;
      for (const [name, key] of this.names) {
        try {
          this.put(out, key, source[name]);
        } catch (error) {
          this.failed(
            `field:${name}`,
            error,
            (text) =>
              `${this.where}: reading the context field "${name}" threw ${text}; lines are written without that field (their ids ` +
              'and other fields are kept). Make the getter return a value without throwing, or stop selecting the field. Reported once.',
          );
        }
      }
      return;
    }
    const fields: LogFields = {};
    try {
      const picked = (this.picker as Picker)(context);
      if (picked === null || typeof picked !== 'object') return;
      for (const key of Object.keys(picked)) {
        const safeKey = key.length <= 64 && !UNSAFE_KEY_CHAR.test(key) ? key : key.slice(0, 64).replace(UNSAFE_KEY_CHARS, '_');
        if (safeKey === '' || this.reserved.has(safeKey) || FORBIDDEN_KEYS.has(safeKey)) continue;
        this.put(fields, this.own.has(safeKey) ? this.renameResult(safeKey) : safeKey, picked[key]);
      }
    } catch (error) {
      this.failed(
        'function',
        error,
        (text) =>
          `${this.where}: the contextFields function threw ${text}; lines are written without the context fields while it throws ` +
          '(their ids are kept). Make the function return the fields without throwing (e.g. read optional values with ?.). Reported once.',
      );
      return;
    }
    for (const key in fields) out[key] = fields[key] as LogFieldValue;
  }

  /** The key a serializer's result `key`, one of the logger's own keys, is logged under; warns once per key. */
  private renameResult(key: string): string {
    let renamed = this.renamed.get(key);
    if (renamed === undefined) {
      renamed = renameKey(key, (candidate) => this.own.has(candidate) || this.reserved.has(candidate));
      this.renamed.set(key, renamed);
      warnOnce(
        `${this.where}: the contextFields function returned "${key}", a key ${this.logger} writes itself, so it is logged as "${renamed}" ` +
          `(a second "${key}" key on the line could pass for the logger's own). Return it under another name, e.g. app_${key}.`,
        true,
      );
    }
    return renamed;
  }

  /** Reports a failure of the user's code once per reader and `what`; the line goes on without it. */
  private failed(what: string, error: unknown, message: (text: string) => string): void {
    if (this.failures.has(what)) return;
    this.failures.add(what);
    const { text, stack } = describeError(error);
    report('error', message(text), true, stack);
  }

  private put(out: LogFields, key: string, value: unknown): void {
    const logValue = toLogValue(value, this.maxLength);
    if (logValue !== undefined) out[key] = logValue;
  }
}

/** The ids a line written now gets: the app's trace source's (an active tracer span), else the record's; `undefined`: none. */
function traceOf(record: ContextRecord): Pick<TraceInfo, 'traceId' | 'spanId'> | undefined {
  try {
    const source = traceSourceOf(record.config);
    if (source !== undefined) {
      const ids = source.logIds(record);
      if (ids !== undefined) return ids ?? undefined;
    }
    return record.trace;
  } catch {
    return undefined;
  }
}

/**
 * Builds the reader every logging integration uses, for your own logger integrations: `current()`
 * gives `{ correlationId, traceId, spanId, ...selected }` for the active context (`undefined` outside
 * one), `forRequest(req)` the same for a request's context even where it is not active. List your
 * logger's own keys in `reservedKeys` so that no field takes one (they come as `ctx_<name>`).
 * @throws ContextConfigError when an option is unusable; the message names it.
 * @example
 * const fields = createLogFields({ contextFields: ['userId'] });
 * myLogger.info({ ...fields.current(), msg: 'hello' });
 */
export function createLogFields<T extends object = RegisteredContext>(options?: LogFieldsOptions<T>): LogFieldSource {
  return new LogFieldReader(options as LogFieldsOptions<never> | undefined, 'createLogFields()');
}
