import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage } from 'node:http';
import { ContextCreationError } from './context.errors.js';
import type { ContextFactory, ContextInit, ContextSource } from './interfaces/context-init.interface.js';

const CREATING = 1;
const CREATED = 2;
const FAILED = 3;

/**
 * The library's state for one request, message or job: the correlation id and the user's
 * context, created on first use. One record per request; the user's object is never mixed with it.
 * @internal
 */
export class ContextRecord<T extends object = object> {
  private state = 0;
  private value: T | Error | undefined;
  /** Whether the correlation id was echoed on the response (HTTP only). */
  echoed = false;

  constructor(
    /** The correlation id of this request. */
    readonly correlationId: string,
    /** What opened the context. */
    readonly source: ContextSource,
    private factory: ContextFactory<T> | undefined,
    private request: IncomingMessage | undefined,
    given?: T,
  ) {
    if (given !== undefined) {
      this.state = CREATED;
      this.value = given;
      this.factory = undefined;
    }
  }

  /** Whether the user's context object exists yet (it is built on first read). */
  get created(): boolean {
    return this.state === CREATED;
  }

  /** The user's context object, built on the first read; a failed build is rethrown on every read. */
  get context(): T {
    if (this.state === CREATED) return this.value as T;
    if (this.state === FAILED) throw this.value as Error;
    if (this.state === CREATING) {
      throw ContextCreationError.create(
        'context',
        'the context class or factory read the context while it was being created; ' +
          'take what it needs from its ContextInit argument instead.',
      );
    }
    this.state = CREATING;
    const factory = this.factory as ContextFactory<T>;
    const init: ContextInit = { correlationId: this.correlationId, source: this.source, request: this.request };
    this.factory = undefined;
    this.request = undefined;
    try {
      const value = factory(init);
      this.value = value;
      this.state = CREATED;
      return value;
    } catch (error) {
      this.value = error instanceof Error ? error : new Error(String(error));
      this.state = FAILED;
      throw this.value;
    }
  }
}

const STORAGE_KEY = Symbol.for('nestjs-context:storage');
type Holder = { [STORAGE_KEY]?: AsyncLocalStorage<ContextRecord> };

/**
 * The one AsyncLocalStorage of the process. It lives on `globalThis` under a registered symbol so
 * that the ESM and CommonJS builds of this package (and two copies of it) share it.
 * @internal
 */
export const storage: AsyncLocalStorage<ContextRecord> = ((globalThis as Holder)[STORAGE_KEY] ??=
  new AsyncLocalStorage<ContextRecord>());
