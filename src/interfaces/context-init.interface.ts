import type { IncomingMessage } from 'node:http';

/**
 * Where a context was opened: `'http'` for a request, `'manual'` for `contextService.run()` and
 * `@WithContext()`, the Nest execution-context type (`'rpc'`, `'ws'`) for messages, and the
 * integration that opened it: `'bullmq'` (a job), `'schedule'` (a cron, interval or timeout run),
 * `'event'` (an event listener given a fresh context); or a source you pass to `@WithContext()`.
 */
export type ContextSource = 'http' | 'manual' | 'rpc' | 'ws' | 'bullmq' | 'schedule' | 'event' | (string & {});

/**
 * What the library hands to the context class constructor (or to the `factory` option) when it
 * creates the context of one request, message or job.
 *
 * @example
 * class MyContext {
 *   readonly correlationId: string;
 *   constructor(init: ContextInit) { this.correlationId = init.correlationId; }
 * }
 */
export interface ContextInit {
  /** The correlation id of this request: the validated inbound one, or a fresh one. */
  readonly correlationId: string;
  /** What opened the context. */
  readonly source: ContextSource;
  /** The Node request, for HTTP contexts (read headers such as a tenant id from it). */
  readonly request?: IncomingMessage;
}

/** Builds the user's context object from a {@link ContextInit}. Must be synchronous. */
export type ContextFactory<T extends object> = (init: ContextInit) => T;
