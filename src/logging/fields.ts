import { RECORD_KEY } from '../context.constants.js';
import { ContextConfigError, describe } from '../context.errors.js';
import { storage, type ContextRecord } from '../context.storage.js';
import type { RegisteredContext } from '../current-context.js';
import type { TraceInfo } from '../interfaces/trace-info.interface.js';
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
}

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

type Anchor = { [RECORD_KEY]?: ContextRecord; raw?: unknown };
type Picker = (context: object) => Readonly<Record<string, unknown>> | undefined;

const KEY = /^[A-Za-z_$][A-Za-z0-9_$.-]{0,63}$/;
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
const UNSAFE_KEY_CHAR = /[^A-Za-z0-9_$.-]/;
const UNSAFE_KEY_CHARS = new RegExp(UNSAFE_KEY_CHAR.source, 'g');

/**
 * The context record attached to an HTTP request (Node's request, or the `.raw` one of Fastify's
 * wrapper), or `undefined`.
 * @internal
 */
export function recordOf(request: unknown): ContextRecord | undefined {
  if (request === null || typeof request !== 'object') return undefined;
  const anchor = request as Anchor;
  const own = anchor[RECORD_KEY];
  if (own !== undefined) return own;
  const raw = anchor.raw;
  return raw !== null && typeof raw === 'object' ? (raw as Anchor)[RECORD_KEY] : undefined;
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
  private readonly names: readonly string[] | undefined;
  private readonly picker: Picker | undefined;
  private readonly reserved: ReadonlySet<string>;

  /** @param where names the caller in configuration errors, e.g. `'ContextLogger'`. */
  constructor(options: LogFieldsOptions<never> | undefined, where: string) {
    if (options === undefined || options === null) options = {};
    if (typeof options !== 'object') fail(where, `the options must be an object, got ${describe(options)}`, 'Pass an options object or leave it out.');
    const keys: unknown = options.keys ?? {};
    if (keys === null || typeof keys !== 'object') {
      fail(where, `option keys must be an object, got ${describe(keys)}`, `Use e.g. { traceId: 'trace_id' }.`);
    }
    const k = keys as LogFieldKeys;
    this.correlationIdKey = resolveKey(k.correlationId, 'correlationId', where);
    this.traceIdKey = resolveKey(k.traceId, 'traceId', where);
    this.spanIdKey = resolveKey(k.spanId, 'spanId', where);
    const ids = [this.correlationIdKey, this.traceIdKey, this.spanIdKey].filter((key): key is string => key !== undefined);
    if (new Set(ids).size !== ids.length) fail(where, `option keys names one field twice (${ids.join(', ')})`, 'Give each id its own key.');
    this.reserved = new Set(ids);

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
      const names = (selector as string[]).filter((name) => !this.reserved.has(name));
      this.names = names.length > 0 ? Object.freeze([...new Set(names)]) : undefined;
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

  /** The id fields only (fixed for the record's lifetime). A fresh object. */
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

  private addSelected(record: ContextRecord, out: LogFields): void {
    let context: object;
    try {
      context = record.context; // builds it on first use; a failed or half-built context adds nothing
    } catch {
      return;
    }
    try {
      if (this.names !== undefined) {
        const source = context as Record<string, unknown>;
        for (const name of this.names) this.put(out, name, source[name]);
        return;
      }
      const picked = (this.picker as Picker)(context);
      if (picked === null || typeof picked !== 'object') return;
      for (const key of Object.keys(picked)) {
        const safeKey = key.length <= 64 && !UNSAFE_KEY_CHAR.test(key) ? key : key.slice(0, 64).replace(UNSAFE_KEY_CHARS, '_');
        if (safeKey === '' || this.reserved.has(safeKey) || FORBIDDEN_KEYS.has(safeKey)) continue;
        this.put(out, safeKey, picked[key]);
      }
    } catch {
      // a throwing getter or serializer never breaks a log line
    }
  }

  private put(out: LogFields, key: string, value: unknown): void {
    const logValue = toLogValue(value, this.maxLength);
    if (logValue !== undefined) out[key] = logValue;
  }
}

function traceOf(record: ContextRecord): TraceInfo | undefined {
  try {
    return record.trace;
  } catch {
    return undefined;
  }
}

/**
 * Builds the reader every logging integration uses, for your own logger integrations: `current()`
 * gives `{ correlationId, traceId, spanId, ...selected }` for the active context (`undefined` outside
 * one), `forRequest(req)` the same for a request's context even where it is not active.
 * @throws ContextConfigError when an option is unusable; the message names it.
 * @example
 * const fields = createLogFields({ contextFields: ['userId'] });
 * myLogger.info({ ...fields.current(), msg: 'hello' });
 */
export function createLogFields<T extends object = RegisteredContext>(options?: LogFieldsOptions<T>): LogFieldSource {
  return new LogFieldReader(options as LogFieldsOptions<never> | undefined, 'createLogFields()');
}
