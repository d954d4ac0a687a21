import type { ServerResponse } from 'node:http';
import type { AbstractHttpAdapter } from '@nestjs/core';
import { recordOfRequest, storage, type ContextRecord } from '../record/context-record.js';

/**
 * What lets clients see the correlation id: `Access-Control-Expose-Headers` (option
 * `correlationId.exposeHeader`) and the id in Nest's JSON error bodies (option
 * `correlationId.errorBody`, and `ContextService.withCorrelationId()` for filters of your own).
 * @internal
 */

const EXPOSE = 'access-control-expose-headers';

/**
 * Makes `res` add `name` to `Access-Control-Expose-Headers` when its head is written, merged with
 * whatever the app's CORS set-up wrote by then — with `setHeader()` (Express' `cors`) or in the
 * headers given to `writeHead()` (Fastify, `@fastify/cors`) — without duplicates. Setting the header
 * at once would not do: CORS middleware runs later and replaces it. Never throws.
 * @internal
 */
export function exposeOnWriteHead(res: ServerResponse, name: string): void {
  const original = res.writeHead as unknown;
  if (typeof original !== 'function') return;
  const writeHead = function (this: ServerResponse, ...args: unknown[]): unknown {
    try {
      mergeExposed(this, name, args);
    } catch {
      // A response object that refuses the header goes out without it.
    }
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
  res.writeHead = writeHead as ServerResponse['writeHead'];
}

/** Moves every expose value of `writeHead`'s headers argument into one merged header on `res`. */
function mergeExposed(res: ServerResponse, name: string, args: unknown[]): void {
  const names: string[] = [];
  collect(res.getHeader(EXPOSE), names);
  const last = args.length > 1 ? args[args.length - 1] : undefined;
  if (Array.isArray(last)) {
    // Node's flat form: [name, value, name, value, …].
    const copy: unknown[] = [];
    for (let i = 0; i + 1 < last.length; i += 2) {
      if (String(last[i]).toLowerCase() === EXPOSE) collect(last[i + 1], names);
      else copy.push(last[i], last[i + 1]);
    }
    if (copy.length !== last.length) args[args.length - 1] = copy;
  } else if (last !== null && typeof last === 'object') {
    let copy: Record<string, unknown> | undefined;
    for (const key of Object.keys(last)) {
      if (key.toLowerCase() !== EXPOSE) continue;
      collect((last as Record<string, unknown>)[key], names);
      copy ??= { ...(last as Record<string, unknown>) };
      delete copy[key];
    }
    if (copy !== undefined) args[args.length - 1] = copy;
  }
  res.setHeader(EXPOSE, mergeNames(names, name));
}

/** Adds the comma-separated names of a header value (a string, a number or a list of them) to `into`. */
function collect(value: unknown, into: string[]): void {
  if (value === undefined || value === null) return;
  if (Array.isArray(value)) {
    for (const item of value) collect(item, into);
    return;
  }
  for (const part of String(value).split(',')) {
    const trimmed = part.trim();
    if (trimmed !== '') into.push(trimmed);
  }
}

/** `names` without case-insensitive duplicates (first spelling kept), plus `name` unless present. @internal */
export function mergeNames(names: readonly string[], name: string): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const n of [...names, name]) {
    const key = n.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(n);
  }
  return out.join(', ');
}

/** Whether `value` is a plain object (an error body Nest serialises as JSON), not an array, buffer, stream or class instance. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * `body` with `field` set to `correlationId` — a copy, `body` itself is left as it is — or `body`
 * unchanged when it already has the field or is not a plain object. @internal
 */
export function withIdField<B extends object>(body: B, field: string, correlationId: string): B {
  if (!isPlainObject(body) || body[field] !== undefined) return body;
  return { ...body, [field]: correlationId } as B;
}

/** The record of the request a response object answers (Express' `res.req`, Fastify's reply, Node's `res.req`). */
function recordOfResponse(response: unknown, config: object): ContextRecord | undefined {
  if (response === null || typeof response !== 'object') return undefined;
  try {
    const r = response as { req?: unknown; raw?: { req?: unknown } | null; request?: unknown };
    const found = recordOfRequest(r.req, config) ?? recordOfRequest(r.raw?.req, config) ?? recordOfRequest(r.request, config);
    if (found !== undefined) return found;
  } catch {
    // A response whose properties cannot be read: try the active context.
  }
  const active = storage.getStore();
  return active !== undefined && active.config === config ? active : undefined;
}

/** Undoes a mount (called when the app closes). @internal */
export type Unmount = () => void;

/**
 * Makes the app's HTTP adapter add the correlation id as `field` to JSON object bodies it sends
 * with a status of 400 or more: what Nest's default exception filter (and a filter that answers with
 * `httpAdapter.reply()`) sends. Only this adapter instance (this app) is changed; the undo puts it
 * back. The body is copied, never changed.
 * @internal
 */
export function mountErrorBody(adapter: AbstractHttpAdapter | undefined | null, config: object, field: string): Unmount {
  if (adapter === undefined || adapter === null || typeof adapter.reply !== 'function') return () => undefined;
  const target = adapter as unknown as { reply: (response: unknown, body: unknown, statusCode?: number) => unknown };
  const original = target.reply;
  const hadOwn = Object.prototype.hasOwnProperty.call(target, 'reply');
  let active = true;
  const reply = function (this: unknown, response: unknown, body: unknown, statusCode?: number): unknown {
    if (active && typeof statusCode === 'number' && statusCode >= 400 && isPlainObject(body)) {
      const id = recordOfResponse(response, config)?.correlationId;
      if (id !== undefined) body = withIdField(body, field, id);
    }
    return original.call(this, response, body, statusCode);
  };
  target.reply = reply;
  return () => {
    active = false;
    if (target.reply !== reply) return;
    if (hadOwn) target.reply = original;
    else delete (target as { reply?: unknown }).reply;
  };
}
