/**
 * `nestjs-context/pino`: the context on every pino line — the app's own lines (`mixin`) and
 * pino-http's request and response lines (`customProps`), with nestjs-pino or on their own.
 * Peer dependency: `pino` (and `pino-http` / `nestjs-pino` if you use them).
 *
 * @module nestjs-context/pino
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import pino from 'pino';
import { storage, type ContextRecord } from '../../record/context-record.js';
import type { RegisteredContext } from '../../access/current-context.js';
import { LogFieldReader, recordOf, type LoggerOwnKeys, type LogFields, type LogFieldsOptions } from '../../logging/fields.js';

export type { LogFields, LogFieldsOptions } from '../../logging/fields.js';

/** A pino `mixin`: returns the fields the line gets from the active context (`{}` outside one). */
export type ContextMixin = (mergeObject: object, level: number, logger?: object) => LogFields;

/** A pino-http `customProps`: returns the fields the request's logger is bound to (`{}` when none). */
export type ContextCustomProps = (req: IncomingMessage, res: ServerResponse) => LogFields;

/** Options to spread into pino-http's (or nestjs-pino's `pinoHttp`) options. */
export interface PinoHttpContextOptions {
  /** Adds the fields to every line written inside a context. */
  mixin: ContextMixin;
  /** Binds the request's ids to `req.log` and to pino-http's request/response lines. */
  customProps: ContextCustomProps;
}

const CHINDINGS: symbol = pino.symbols.chindingsSym;
const LEVEL_PREFIXES: symbol = pino.symbols.lsCacheSym;
const TIME: symbol = pino.symbols.timeSym;
const MESSAGE_KEY: symbol = pino.symbols.messageKeySym;
const ERROR_KEY: symbol = pino.symbols.errorKeySym;
const NESTED_KEY: symbol = pino.symbols.nestedKeySym;
const EMPTY: LogFields = Object.freeze({}) as LogFields;

/**
 * The keys pino (`level`, `time`, `pid`, `hostname`, `msg`, `err`), pino-http (`req`, `res`,
 * `responseTime`, `reqId`) and nestjs-pino (`context`) write by default; a context field or id key
 * with one of these names is logged as `ctx_<name>`. The keys configured on the logger writing a
 * line (`messageKey`, `errorKey`, `nestedKey`, `formatters.level`, `timestamp`, `base`, child
 * bindings) are read from that logger when the line is written.
 */
const PINO_KEYS: LoggerOwnKeys = {
  logger: 'pino',
  keys: ['level', 'time', 'pid', 'hostname', 'msg', 'err', 'req', 'res', 'responseTime', 'reqId', 'context'],
};
const THE_LOGGER = 'the pino logger writing the line (its messageKey, errorKey, level or time key, base or a child binding)';

/**
 * For each record whose ids were bound to a pino-http request logger: those ids as pino writes them
 * into a child logger's bindings (`"correlationId":"…","traceId":"…","spanId":"…"`). A line whose
 * logger's bindings contain this text has the ids already, so the mixin leaves them out (pino does
 * not merge duplicate keys). The trace and span ids make it unguessable from request data.
 */
const boundIds = new WeakMap<ContextRecord, { readonly ids: LogFields; readonly mark: string }>();

function bindingsOf(logger: unknown): string | undefined {
  if (logger === null || typeof logger !== 'object') return undefined;
  const chindings = (logger as Record<symbol, unknown>)[CHINDINGS];
  return typeof chindings === 'string' ? chindings : undefined;
}

function idsFor(reader: LogFieldReader, record: ContextRecord): { readonly ids: LogFields; readonly mark: string } {
  let entry = boundIds.get(record);
  if (entry === undefined) {
    const ids = Object.freeze(reader.ids(record));
    entry = { ids, mark: JSON.stringify(ids).slice(1, -1) };
    boundIds.set(record, entry);
  }
  return entry;
}

function hasIds(logger: unknown, record: ContextRecord): boolean {
  const entry = boundIds.get(record);
  if (entry === undefined || entry.mark === '') return false;
  return bindingsOf(logger)?.includes(entry.mark) === true;
}

/** Adds the top-level keys of pino's JSON members text (`"a":1,"b":{…}`) to `keys`; nothing when it is not JSON. */
function addMemberKeys(keys: Set<string>, members: string): void {
  if (members === '') return;
  try {
    const parsed: unknown = JSON.parse(`{${members}}`);
    if (parsed !== null && typeof parsed === 'object') for (const key of Object.keys(parsed)) keys.add(key);
  } catch {
    // not the JSON pino writes (a custom stringifier): nothing to learn from it
  }
}

/** Every key a pino logger writes itself, read from the logger: message, error and nested keys, level and time keys, bindings. */
function readOwnKeys(logger: Record<symbol, unknown>, chindings: string): ReadonlySet<string> {
  const keys = new Set<string>();
  for (const symbol of [MESSAGE_KEY, ERROR_KEY, NESTED_KEY]) {
    const key = logger[symbol];
    if (typeof key === 'string' && key !== '') keys.add(key);
  }
  const levels = logger[LEVEL_PREFIXES]; // { 30: '{"level":30', … }: how each level starts a line
  if (levels !== null && typeof levels === 'object') {
    for (const prefix of Object.values(levels)) if (typeof prefix === 'string') addMemberKeys(keys, prefix.slice(1));
  }
  const time = logger[TIME]; // the timestamp function: ',"time":1700000000000', or '' without one
  if (typeof time === 'function') {
    try {
      const text: unknown = time.call(logger);
      if (typeof text === 'string') addMemberKeys(keys, text.slice(1));
    } catch {
      // a throwing timestamp function breaks pino's own lines; nothing to learn here
    }
  }
  addMemberKeys(keys, chindings.slice(1)); // ',"pid":1,"hostname":"h",…bindings'
  return keys;
}

/** The keys each pino logger writes itself, with the bindings they were read from (`setBindings()` changes them). */
const ownKeys = new WeakMap<object, { readonly chindings: string; readonly keys: ReadonlySet<string> }>();

/** The keys the pino logger `logger` writes itself (read once per logger and bindings), or `undefined` for another object. */
function ownKeysOf(logger: unknown): ReadonlySet<string> | undefined {
  const chindings = bindingsOf(logger);
  if (chindings === undefined) return undefined;
  const target = logger as Record<symbol, unknown>;
  const cached = ownKeys.get(target);
  if (cached !== undefined && cached.chindings === chindings) return cached.keys;
  const keys = readOwnKeys(target, chindings);
  ownKeys.set(target, { chindings, keys });
  return keys;
}

/** `fields` with the keys `logger` writes itself renamed `ctx_<key>` (see {@link LogFieldReader.avoid}). */
function avoidOwnKeys(reader: LogFieldReader, fields: LogFields, logger: unknown): LogFields {
  if (fields === EMPTY) return fields;
  const keys = ownKeysOf(logger);
  return keys === undefined ? fields : reader.avoid(fields, keys, THE_LOGGER);
}

/**
 * The logger pino-http writes the response line with: the last one it pushed to `res.allLogs`
 * (`res.log` may belong to someone else — Fastify sets its own), else `res.log`.
 */
function responseLoggerOf(res: ServerResponse | undefined): unknown {
  const out = res as { allLogs?: unknown; log?: unknown } | undefined;
  const all = out?.allLogs;
  return Array.isArray(all) && all.length > 0 ? all[all.length - 1] : out?.log;
}

function mixinOf(reader: LogFieldReader): ContextMixin {
  return (_mergeObject, _level, logger) => {
    const record = storage.getStore();
    // pino merges the call's own object into what the mixin returns, so it must be a fresh object
    if (record === undefined) return {};
    try {
      const fields = hasIds(logger, record) ? (reader.selected(record) ?? {}) : reader.of(record);
      return avoidOwnKeys(reader, fields, logger);
    } catch {
      return {};
    }
  };
}

function customPropsOf(reader: LogFieldReader): ContextCustomProps {
  return (req, res) => {
    try {
      const record = recordOf(req);
      if (record === undefined) return EMPTY; // the context does not exist yet (pino-http mounted before it)
      const inside = storage.getStore() === record;
      const { ids } = idsFor(reader, record);
      const finishing = res?.headersSent === true;
      if (!finishing) return ids; // request start: bind the ids; the mixin adds the (changing) context fields
      // response line: pino-http writes it with the request's logger, which may hold the ids already;
      // what is returned here is bound to a child of that logger, so it must not take that logger's keys
      const logger = responseLoggerOf(res);
      if (hasIds(logger, record)) return inside ? EMPTY : avoidOwnKeys(reader, reader.selected(record) ?? EMPTY, logger);
      return avoidOwnKeys(reader, inside ? ids : reader.of(record), logger);
    } catch {
      return EMPTY;
    }
  };
}

/**
 * A pino `mixin` adding `{ correlationId, traceId, spanId, ...selected }` to every line written
 * inside a context (nothing outside one). Lines of loggers already bound to the request's ids by
 * {@link contextCustomProps} get only the selected context fields, so no key appears twice.
 * @throws ContextConfigError when an option is unusable.
 * @example const logger = pino({ mixin: contextMixin({ contextFields: ['userId'] }) });
 */
export function contextMixin<T extends object = RegisteredContext>(options?: LogFieldsOptions<T>): ContextMixin {
  return mixinOf(new LogFieldReader(options as LogFieldsOptions<never> | undefined, 'contextMixin()', PINO_KEYS));
}

/**
 * A pino-http `customProps` that binds the request's correlation id, trace id and span id to
 * `req.log` and to pino-http's automatic lines. It reads the context from the request itself, so it
 * works where the context is not active (pino-http's response line, code that lost it). `req.log` is
 * bound when the context exists by the time pino-http sees the request — always with nestjs-pino and
 * on Express; the response line gets the fields either way (Fastify `app.use()` before `init()`,
 * `enterEarly: false`). Use it together with {@link contextMixin} given the same `keys`
 * (or use {@link pinoHttpContext}, which shares one set of options).
 * @throws ContextConfigError when an option is unusable.
 */
export function contextCustomProps<T extends object = RegisteredContext>(options?: LogFieldsOptions<T>): ContextCustomProps {
  return customPropsOf(new LogFieldReader(options as LogFieldsOptions<never> | undefined, 'contextCustomProps()', PINO_KEYS));
}

/**
 * `{ mixin, customProps }` sharing one set of options: spread into pino-http's options or
 * nestjs-pino's `pinoHttp`, and every line — pino-http's `request completed`/`request errored`, the
 * app's lines through `PinoLogger`/`Logger`, Nest's own lines — carries the same fields.
 * @throws ContextConfigError when an option is unusable.
 * @example
 * LoggerModule.forRoot({ pinoHttp: { ...pinoHttpContext({ contextFields: ['userId'] }), level: 'info' } })
 */
export function pinoHttpContext<T extends object = RegisteredContext>(options?: LogFieldsOptions<T>): PinoHttpContextOptions {
  const reader = new LogFieldReader(options as LogFieldsOptions<never> | undefined, 'pinoHttpContext()', PINO_KEYS);
  return { mixin: mixinOf(reader), customProps: customPropsOf(reader) };
}
