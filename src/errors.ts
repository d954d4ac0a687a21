/**
 * Base class of every error thrown by nestjs-context, so callers can tell them apart.
 */
export class ContextError extends Error {
  /** The class name, `'ContextError'`, so it shows in stack traces and logs. */
  override name = 'ContextError';
}

/**
 * Thrown when the context is read where none is active: at bootstrap, in a cron job or script
 * that did not open one, or after an async chain was broken by a callback-based library.
 */
export class ContextNotActiveError extends ContextError {
  /** The class name, `'ContextNotActiveError'`, so it shows in stack traces and logs. */
  override name = 'ContextNotActiveError';

  /** Builds the error with a message that names the caller and the ways to fix it. */
  static create(caller: string): ContextNotActiveError {
    return new ContextNotActiveError(
      `${caller}: no context is active here. A context exists while an HTTP request, a message or a job ` +
        `is handled, and inside contextService.run(). If this code runs at bootstrap, in a cron job, ` +
        `a queue consumer or a script, wrap it: contextService.run(() => ...). If it runs inside a request, ` +
        `check that ContextModule.forRoot() is imported in the root module and that nothing broke the async ` +
        `chain (a callback-based library can; see "Caveats" in the nestjs-context docs, docs/caveats-and-compatibility.md). ` +
        `Use contextService.getOrUndefined() to read it without throwing.`,
    );
  }
}

/** Thrown at bootstrap when `ContextModule.forRoot()`/`forRootAsync()` received something it cannot use. */
export class ContextConfigError extends ContextError {
  /** The class name, `'ContextConfigError'`, so it shows in stack traces and logs. */
  override name = 'ContextConfigError';

  /** Builds the error for one wrong option, saying what was given and what is expected. */
  static create(what: string, fix: string): ContextConfigError {
    return new ContextConfigError(`ContextModule: ${what}. ${fix}`);
  }
}

/** Thrown when the user's context class or factory cannot produce a context object. */
export class ContextCreationError extends ContextError {
  /** The class name, `'ContextCreationError'`, so it shows in stack traces and logs. */
  override name = 'ContextCreationError';

  /** Builds the error for a context factory that returned something unusable. */
  static create(className: string, problem: string): ContextCreationError {
    return new ContextCreationError(`ContextModule: creating the context (${className}) failed: ${problem}`);
  }
}

/**
 * Reported through Nest's logger (never thrown at your code) when one of your option callbacks —
 * `trustInbound`, `correlationId.validate`, `correlationId.generate` — throws or returns something
 * unusable. An HTTP request that reaches a handler answers 500 with a valid correlation id header
 * (this error is the `cause` of the `InternalServerErrorException`); a message, job, manual run or
 * anything else goes on in a fresh context with a default id. The original error is its `cause`.
 */
export class ContextCallbackError extends ContextError {
  /** The class name, `'ContextCallbackError'`, so it shows in stack traces and logs. */
  override name = 'ContextCallbackError';

  /** Builds the error for the option `option`, saying what went wrong and how to fix it. */
  static create(option: string, problem: string, cause?: unknown, outcome = DEFAULT_OUTCOME): ContextCallbackError {
    return new ContextCallbackError(
      `ContextModule: your ${option} callback ${problem}. ${outcome} Make ${option} total: return a value of the ` +
        `documented type for every input (catch inside it and return a safe answer).`,
      cause === undefined ? undefined : { cause },
    );
  }
}

const DEFAULT_OUTCOME = 'The context got a default correlation id and no inbound propagation data was used.';

/** Describes a value for an error message without dumping it whole. @internal */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'string') return `string ${JSON.stringify(value.slice(0, 40))}`;
  if (typeof value === 'object') return `an object (${Object.prototype.toString.call(value)})`;
  return `${typeof value} ${String(value)}`;
}
