import { AsyncResource } from 'node:async_hooks';
import type { ContextSource } from '../interfaces/context-init.interface.js';

/**
 * Brand on the prototypes of the library's own classes — its providers, modules, explorers and
 * `ContextLogger` — so that instrumentation which wraps every provider (`@nestjs/observe`, through
 * `nestjs-context/observe`) can leave them out. `Symbol.for`, so every build and copy of the
 * package agree on it.
 * @internal
 */
export const INTERNAL_KEY = Symbol.for('nestjs-context:internal');

/** Brands classes of the library as its own (see {@link INTERNAL_KEY}); subclasses inherit it. @internal */
export function markInternal(...classes: { readonly prototype: object }[]): void {
  for (const cls of classes) Object.defineProperty(cls.prototype, INTERNAL_KEY, { value: true });
}

/**
 * Whether `value` is an instance of one of the library's own classes (or one of those classes
 * itself). Never throws: a value whose properties cannot be read (a proxy whose traps throw) is not.
 * @internal
 */
export function isInternal(value: unknown): boolean {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false;
  try {
    const target = typeof value === 'function' ? (value as { prototype?: unknown }).prototype : value;
    return target !== null && typeof target === 'object' && (target as { [INTERNAL_KEY]?: unknown })[INTERNAL_KEY] === true;
  } catch {
    return false;
  }
}

/** What a reader answers once what it reads from is gone: it is dropped from the registry. @internal */
export const STALE: unique symbol = Symbol('nestjs-context:stale-trace-id-reader');

/** Reads the id an instrumentation holds for the operation running now, or null/undefined outside one ({@link STALE}: gone for good). @internal */
export type TraceIdReader = () => string | null | undefined | typeof STALE;

const READERS = Symbol.for('nestjs-context:instrumentation-trace-id-readers');

/** The process's readers (one per `@nestjs/observe` set-up), shared by every build and copy of the package. */
function readers(): Set<TraceIdReader> {
  const holder = globalThis as typeof globalThis & { [READERS]?: Set<TraceIdReader> };
  return (holder[READERS] ??= new Set());
}

/**
 * Registers how to read an instrumentation's id for the current operation (`nestjs-context/observe`:
 * Observe's `TracerService.currentTraceId()`, which reads Observe's own AsyncLocalStorage), so the
 * logging integrations can tell which id Observe writes on a line. @internal
 */
export function addTraceIdReader(reader: TraceIdReader): void {
  readers().add(reader);
}

/**
 * The id a registered instrumentation holds for the operation running now: the first reader's
 * string, else `undefined` (none registered, none inside an operation, or readers that throw). @internal
 */
export function instrumentationTraceId(): string | undefined {
  const all = (globalThis as { [READERS]?: Set<TraceIdReader> })[READERS];
  if (all === undefined) return undefined;
  for (const reader of all) {
    try {
      const id = reader();
      if (id === STALE) all.delete(reader);
      else if (typeof id === 'string' && id !== '') return id;
    } catch {
      // An instrumentation that fails to answer writes nothing of its own either.
    }
  }
  return undefined;
}

/**
 * Which id a context that accepted no inbound id adopts from an instrumentation that opened its own
 * operation around it first (`nestjs-context/observe`: the id `@nestjs/observe` minted for a gateway
 * message, a scheduled run or a job): the id, or `undefined` to generate one as usual. `anchor` is
 * what the entry has of the operation (a job object), if anything. Must not throw. @internal
 */
export type IdAdopter = (source: ContextSource, anchor: object | undefined) => string | undefined;

const ADOPTERS = Symbol.for('nestjs-context:instrumentation-id-adopters');

/** Registers an {@link IdAdopter} for the process (shared by every build and copy of the package). @internal */
export function addIdAdopter(adopter: IdAdopter): void {
  const holder = globalThis as typeof globalThis & { [ADOPTERS]?: Set<IdAdopter> };
  (holder[ADOPTERS] ??= new Set()).add(adopter);
}

/**
 * The id a new context for `source` adopts (see {@link IdAdopter}): the first registered adopter's
 * non-empty string, else `undefined` (none registered, none answers, or adopters that throw). The
 * caller still validates it. @internal
 */
export function adoptableId(source: ContextSource, anchor: object | undefined): string | undefined {
  const all = (globalThis as { [ADOPTERS]?: Set<IdAdopter> })[ADOPTERS];
  if (all === undefined) return undefined;
  for (const adopter of all) {
    try {
      const id = adopter(source, anchor);
      if (typeof id === 'string' && id !== '') return id;
    } catch {
      // An adopter that fails has nothing to offer: the next one, or a generated id.
    }
  }
  return undefined;
}

/**
 * A job option under which an instrumentation carries its own id on queued jobs (`@nestjs/observe`:
 * `observeTraceId`), so that the BullMQ integration writes the job's correlation id there too and
 * reads it back as a candidate id. `accepts` says which ids the instrumentation takes from a job. @internal
 */
export interface JobIdOption {
  readonly name: string;
  accepts(id: string): boolean;
}

const JOB_ID_OPTIONS = Symbol.for('nestjs-context:instrumentation-job-id-options');

/** Registers a {@link JobIdOption} for the process (once per name). @internal */
export function addJobIdOption(option: JobIdOption): void {
  const holder = globalThis as typeof globalThis & { [JOB_ID_OPTIONS]?: Map<string, JobIdOption> };
  const all = (holder[JOB_ID_OPTIONS] ??= new Map());
  if (!all.has(option.name)) all.set(option.name, option);
}

/** The registered {@link JobIdOption}s (none: an empty list). @internal */
export function jobIdOptions(): readonly JobIdOption[] {
  const all = (globalThis as { [JOB_ID_OPTIONS]?: Map<string, JobIdOption> })[JOB_ID_OPTIONS];
  return all === undefined ? NO_OPTIONS : [...all.values()];
}

const NO_OPTIONS: readonly JobIdOption[] = Object.freeze([]);

/** Runs a function in the async context of an operation an instrumentation opened (see {@link inOperationScope}). @internal */
export type OperationScope = <R>(fn: () => R) => R;

interface ScopeSlot {
  scope: OperationScope | undefined;
}

const SCOPE_SLOT = Symbol.for('nestjs-context:operation-scope-slot');

function slotHolder(): { current: ScopeSlot | undefined } {
  const holder = globalThis as typeof globalThis & { [SCOPE_SLOT]?: { current: ScopeSlot | undefined } };
  return (holder[SCOPE_SLOT] ??= { current: undefined });
}

/**
 * Calls `fn` and returns what it returned, with the scope of the operation an instrumentation opened
 * inside that call, if one offered it (see {@link offerOperationScope}) while `fn` ran synchronously.
 * For an entry of ours that wraps an instrumentation's wrapper (`nestjs-context/websockets` around
 * `@nestjs/observe`'s gateway message operation): what the call returns to be run later (an
 * Observable) can then run inside that operation too. @internal
 */
export function inOperationScope<R>(fn: () => R): { result: R; scope: OperationScope | undefined } {
  const holder = slotHolder();
  const previous = holder.current;
  const slot: ScopeSlot = { scope: undefined };
  holder.current = slot;
  try {
    return { result: fn(), scope: slot.scope };
  } finally {
    holder.current = previous;
  }
}

/**
 * Called by an instrumentation's hook inside the operation it just opened: hands the current async
 * context (its store included) to the entry of ours that is calling it, if one is (see
 * {@link inOperationScope}); the first offer wins. Never throws. @internal
 */
export function offerOperationScope(): void {
  const slot = slotHolder().current;
  if (slot === undefined || slot.scope !== undefined) return;
  try {
    const resource = new AsyncResource('nestjs-context:operation-scope');
    slot.scope = (fn) => resource.runInAsyncScope(fn);
  } catch {
    // No async resource can be made here: what the call returns runs where it is subscribed.
  }
}
