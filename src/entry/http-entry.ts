import type { IncomingMessage, ServerResponse } from 'node:http';
import { InternalServerErrorException } from '@nestjs/common';
import type { AbstractHttpAdapter } from '@nestjs/core';
import { RECORD_KEY } from '../constants.js';
import { recordOfRequest, storage, type ContextRecord } from '../record/context-record.js';

type Entry = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;
interface Layer { handle?: unknown; name?: string }
interface ExpressLike {
  use(fn: Entry): unknown;
  handle?: (req: IncomingMessage, res: ServerResponse, callback?: unknown) => unknown;
  router?: { stack?: Layer[] };
  _router?: { stack?: Layer[] };
}
type Listener = (req: IncomingMessage, res: ServerResponse) => void;
interface ServerLike {
  listeners(event: 'request'): Listener[];
  removeListener(event: 'request', listener: Listener): unknown;
  prependListener(event: 'request', listener: Listener): unknown;
}
type HookDone = (error?: unknown) => void;
type RawRequest = IncomingMessage & { [RECORD_KEY]?: ContextRecord };
type RawHolder = { raw: RawRequest };
interface FastifyLike {
  addHook(name: 'onRequest', hook: (request: RawHolder, reply: { raw: ServerResponse }, done: HookDone) => void): unknown;
}

/** Opens (or finds) the record of one HTTP request and echoes its id; it belongs to one app. @internal */
export type HttpEnter = (req: IncomingMessage, res: ServerResponse) => ContextRecord;

/** Undoes a mount (called when the app closes). @internal */
export type Unmount = () => void;

const NOTHING: Unmount = () => undefined;

/**
 * Mounts a connect-style function at the front of the HTTP adapter's chain. Express: first in the
 * app's stack (before body parsers and `app.use()` middleware; Express 4 keeps its own init layer
 * first). Other adapters (Fastify: Nest's middleware runner): their `use()`.
 * @internal
 */
export function mountEntry(adapter: AbstractHttpAdapter | undefined, entry: Entry): void {
  if (adapter === undefined || adapter === null) return;
  if (adapter.getType() !== 'express') {
    adapter.use(entry);
    return;
  }
  const app = adapter.getInstance<ExpressLike>();
  app.use(entry);
  const stack = app.router?.stack ?? app._router?.stack;
  if (!Array.isArray(stack)) return;
  const at = stack.findIndex((layer) => layer.handle === entry);
  if (at <= 0) return;
  const [layer] = stack.splice(at, 1);
  const init = stack.findIndex((l) => l.name === 'expressInit');
  stack.splice(init + 1, 0, layer as Layer);
}

/**
 * Enters the context of every HTTP request before the framework sees it, at the cheapest place that
 * still covers every way the app is served:
 * - Express: around the app's own `handle()`, which both `http.Server` and serverless wrappers
 *   (`@codegenie/serverless-express`, `app.getHttpAdapter().getInstance()(req, res)`) go through.
 *   No middleware layer is added.
 * - Fastify: around the HTTP server's `request` listener (what `listen()` and supertest use), plus a
 *   native `onRequest` hook for requests that do not come through the server (`inject()`,
 *   serverless handlers) — the hook only checks that the request's record is there.
 * - Any other adapter, or a server whose listener cannot be wrapped: the adapter's `use()`.
 * Returns the undo, run when the app closes.
 * @internal
 */
export function mountContext(adapter: AbstractHttpAdapter | undefined, enter: HttpEnter, config: object, answerFailures: boolean): Unmount {
  if (adapter === undefined || adapter === null) return NOTHING;
  const type = adapter.getType();
  if (type === 'express') {
    const app = adapter.getInstance<ExpressLike>();
    if (typeof app.handle === 'function') return wrapExpressHandle(app, enter, answerFailures);
  } else if (type === 'fastify') {
    const unmount = wrapFastify(adapter, enter, config, answerFailures);
    if (unmount !== undefined) return unmount;
  }
  const enterOnce = enterUnlessEntered(enter, config, answerFailures);
  adapter.use((req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => enterOnce(req, res, next));
  return NOTHING;
}

/** Nest's own body for an unexpected error, as its default exception filter writes it. */
const FAILURE_BODY = JSON.stringify({ statusCode: 500, message: 'Internal server error' });

/**
 * Answers a request whose entry failed with Nest's default 500 (the correlation id header is already
 * set), when no interceptor of the module is there to throw it into Nest's exception layer.
 */
function answerFailure(res: ServerResponse): void {
  if (res.headersSent || res.writableEnded) return;
  res.statusCode = 500;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(FAILURE_BODY));
  res.end(FAILURE_BODY);
}

/**
 * `(req, res, next)` that runs `next` inside the request's context, entering it unless this app's
 * entry already did (the fallbacks behind a wrapped server or app function).
 */
function enterUnlessEntered(
  enter: HttpEnter,
  config: object,
  answerFailures: boolean,
): (req: RawRequest, res: ServerResponse, next: (error?: unknown) => void) => void {
  return (req, res, next) => {
    if (recordOfRequest(req, config) !== undefined) return next();
    const record = enter(req, res);
    // The framework's error path answers 500 (the id header is set already).
    if (record.failure !== undefined && answerFailures) return next(new InternalServerErrorException(undefined, { cause: record.failure }));
    storage.run(record, next);
  };
}

function wrapExpressHandle(app: ExpressLike, enter: HttpEnter, answerFailures: boolean): Unmount {
  const original = app.handle as NonNullable<ExpressLike['handle']>;
  let active = true;
  const call = (self: unknown, req: IncomingMessage, res: ServerResponse, callback: unknown): unknown =>
    original.call(self, req, res, callback);
  const handle = function (this: unknown, req: IncomingMessage, res: ServerResponse, callback?: unknown): unknown {
    if (!active) return original.call(this, req, res, callback);
    const record = enter(req, res);
    if (record.failure !== undefined && answerFailures) return answerFailure(res);
    return storage.run(record, call, this, req, res, callback);
  };
  app.handle = handle;
  return () => {
    active = false;
    if (app.handle === handle) app.handle = original;
  };
}

function wrapFastify(adapter: AbstractHttpAdapter, enter: HttpEnter, config: object, answerFailures: boolean): Unmount | undefined {
  const server = adapter.getHttpServer() as ServerLike | undefined;
  const instance = adapter.getInstance<FastifyLike>();
  if (server === undefined || typeof server?.listeners !== 'function' || typeof instance?.addHook !== 'function') return undefined;
  const listeners = server.listeners('request');
  if (listeners.length !== 1) return undefined;
  const enterOnce = enterUnlessEntered(enter, config, answerFailures);
  let active = true;
  try {
    // Requests that bypass the server (inject(), serverless handlers) are entered here instead.
    // Fastify cannot remove a hook: after the app closes it only passes requests on.
    instance.addHook('onRequest', (request, reply, done) => (active ? enterOnce(request.raw, reply.raw, done) : done()));
  } catch {
    return undefined; // the instance is already started: fall back to the middleware runner
  }
  const handler = listeners[0] as Listener;
  const listener: Listener = function nestjsContextEntry(req, res) {
    if (!active) return handler(req, res);
    const record = enter(req, res);
    if (record.failure !== undefined && answerFailures) return answerFailure(res);
    storage.run(record, handler, req, res);
  };
  server.removeListener('request', handler);
  server.prependListener('request', listener);
  return () => {
    active = false;
    // Put Fastify's own listener back where ours was, unless someone replaced ours meanwhile.
    if (server.listeners('request').includes(listener)) {
      server.removeListener('request', listener);
      server.prependListener('request', handler);
    }
  };
}
