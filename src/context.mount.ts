import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AbstractHttpAdapter } from '@nestjs/core';

type Entry = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;
interface Layer { handle?: unknown; name?: string }
interface ExpressLike { use(fn: Entry): unknown; router?: { stack?: Layer[] }; _router?: { stack?: Layer[] } }

/**
 * Mounts the context entry on the HTTP adapter so it runs before everything else of a request.
 * Express: first in the app's stack (before body parsers and `app.use()` middleware; Express 4 keeps
 * its own init layer first). Fastify: Nest's middleware runner (`@fastify/middie`), ahead of every
 * module's middleware. Other adapters: their `use()`.
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
