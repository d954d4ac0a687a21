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
