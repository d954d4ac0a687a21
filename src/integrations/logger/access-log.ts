import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Logger } from '@nestjs/common';
import { ContextConfigError, describe } from '../../errors.js';
import { storage } from '../../record/context-record.js';
import { recordOf } from '../../logging/fields.js';
import { sanitizeLogValue } from '../../logging/sanitize.js';

/** One finished (or aborted) request, as the access log sees it. Every string is sanitized and capped. */
export interface AccessLogEntry {
  /** The request method, e.g. `GET`. */
  readonly method: string;
  /** The request path, without the query string. */
  readonly path: string;
  /** The response status code. */
  readonly status: number;
  /** Time from the start of the request to the end of the response, in milliseconds (0.1 ms steps). */
  readonly durationMs: number;
  /** The request's correlation id, or `undefined` when the request had no context. */
  readonly correlationId: string | undefined;
  /** Whether the connection closed before the response was fully sent. */
  readonly aborted: boolean;
}

/** Options of the access log of `ContextLoggerModule.forRoot({ accessLog })`. */
export interface AccessLogOptions {
  /** Logger method used for the line. Default: `'log'`. */
  level?: 'log' | 'verbose' | 'debug' | 'warn';
  /** Logger context label of the line. Default: `'AccessLog'`. */
  context?: string;
  /** Requests for which no line is written, e.g. health checks: `(req) => req.url === '/health'`. */
  skip?: (request: IncomingMessage) => boolean;
  /**
   * Builds the message from the entry. Default: `GET /orders/42 200 3.1ms` (plus ` aborted`). The
   * correlation id, trace id and span id come from the context-aware logger (`ContextLogger`, the
   * pino mixin, the winston format); include `entry.correlationId` here for any other logger.
   */
  format?: (entry: AccessLogEntry) => string;
  /** Longest path written; longer ones are cut. Default: 256. */
  maxPathLength?: number;
}

/** Access log options with every default filled in. @internal */
export interface ResolvedAccessLog {
  readonly level: NonNullable<AccessLogOptions['level']>;
  readonly context: string;
  readonly skip: AccessLogOptions['skip'];
  readonly format: (entry: AccessLogEntry) => string;
  readonly maxPathLength: number;
}

type Middleware = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;

const LEVELS: ReadonlySet<string> = new Set(['log', 'verbose', 'debug', 'warn']);

/** The default access log message: `METHOD path status durationms`. */
export function formatAccessLogEntry(entry: AccessLogEntry): string {
  return `${entry.method} ${entry.path} ${entry.status} ${entry.durationMs}ms${entry.aborted ? ' aborted' : ''}`;
}

function invalid(what: string, value: unknown, fix: string): never {
  throw new ContextConfigError(`ContextLoggerModule: option accessLog.${what}, got ${describe(value)}. ${fix}`);
}

/** Checks the `accessLog` option; `undefined` when the access log is off. @internal */
export function resolveAccessLog(option: boolean | AccessLogOptions | undefined): ResolvedAccessLog | undefined {
  if (option === undefined || option === false) return undefined;
  const o: AccessLogOptions = option === true ? {} : option;
  if (o === null || typeof o !== 'object') {
    throw new ContextConfigError(`ContextLoggerModule: option accessLog must be true, false or an object, got ${describe(option)}. Use e.g. { accessLog: true }.`);
  }
  const level = o.level ?? 'log';
  if (!LEVELS.has(level)) invalid('level must be one of log, verbose, debug, warn', level, `Use e.g. 'log'.`);
  const context = o.context ?? 'AccessLog';
  if (typeof context !== 'string') invalid('context must be a string', context, `Use e.g. 'AccessLog'.`);
  if (o.skip !== undefined && typeof o.skip !== 'function') invalid('skip must be a function of the request', o.skip, 'Pass a function or leave it out.');
  if (o.format !== undefined && typeof o.format !== 'function') invalid('format must be a function of the entry', o.format, 'Pass a function or leave it out.');
  const maxPathLength = o.maxPathLength ?? 256;
  if (typeof maxPathLength !== 'number' || !Number.isInteger(maxPathLength) || maxPathLength < 8) {
    invalid('maxPathLength must be an integer of at least 8', maxPathLength, 'Leave it out for the default (256).');
  }
  return { level, context, skip: o.skip, format: o.format ?? formatAccessLogEntry, maxPathLength };
}

/**
 * The access log middleware: notes the start of the request and writes one line through Nest's
 * `Logger` (so through the app's logger) when the response is finished or the connection closes,
 * inside the request's context so the logger adds its fields. Never throws into the request.
 * @internal
 */
export function createAccessLog(options: ResolvedAccessLog): Middleware {
  const logger = new Logger(options.context);
  const { skip, format, level, maxPathLength } = options;

  const write = (req: IncomingMessage, res: ServerResponse, method: string, url: string, started: number): void => {
    try {
      const record = recordOf(req);
      const query = url.indexOf('?');
      const entry: AccessLogEntry = {
        method: sanitizeLogValue(method, 32),
        path: sanitizeLogValue(query === -1 ? url : url.slice(0, query), maxPathLength),
        status: res.statusCode,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        correlationId: record === undefined ? undefined : sanitizeLogValue(record.correlationId),
        aborted: !res.writableFinished,
      };
      let message: string;
      try {
        message = format(entry);
      } catch {
        message = formatAccessLogEntry(entry);
      }
      const emit = (): void => logger[level](message);
      if (record !== undefined && storage.getStore() !== record) storage.run(record, emit);
      else emit();
    } catch {
      // logging must never break a response
    }
  };

  return (req, res, next) => {
    let skipped = false;
    try {
      skipped = skip !== undefined && skip(req) === true;
    } catch {
      skipped = false;
    }
    if (!skipped) {
      const started = performance.now();
      const method = req.method ?? '';
      const url = req.url ?? '';
      let done = false;
      const onDone = (): void => {
        if (done) return;
        done = true;
        res.removeListener('finish', onDone);
        res.removeListener('close', onDone);
        write(req, res, method, url, started);
      };
      res.on('finish', onDone);
      res.on('close', onDone);
    }
    next();
  };
}
