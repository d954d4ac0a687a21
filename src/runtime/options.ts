import type { IncomingMessage } from 'node:http';
import { Logger, type Type } from '@nestjs/common';
import { DEFAULT_REQUEST_HEADERS, DEFAULT_RESPONSE_HEADER } from '../constants.js';
import { ContextCallbackError, ContextConfigError, ContextCreationError, describe } from '../errors.js';
import type { ContextFactory, ContextSource } from '../interfaces/context-init.interface.js';
import type { ContextInjection, ContextModuleOptions, GenerateInput, TrustInbound } from '../interfaces/context-module-options.interface.js';
import type { BaggageOptions, TraceOptions } from '../interfaces/propagation-options.interface.js';
import { generateCorrelationId, isHeaderValue, isValidCorrelationId } from '../propagation/correlation-id.js';
import type { TraceSource } from '../record/trace-source.js';

/** The options with every default filled in and every value checked. @internal */
export interface ResolvedContextOptions<T extends object> {
  /** The context class given to `forRoot()`: what every context of this app is typed as. */
  readonly contextClass: Type<T>;
  readonly factory: ContextFactory<T>;
  /** Writes the correlation id into the configured field when it is still undefined. */
  fill(context: T, correlationId: string): T;
  readonly requestHeaders: readonly string[];
  readonly responseHeader: string | undefined;
  /** Accepts an id; a user validator is wrapped so that it also rejects what cannot be echoed. Throws only {@link ContextCallbackError}. */
  readonly validate: (id: string) => boolean;
  /**
   * Makes an id that can always be echoed and passes `validate` (a user generator's rejected id is
   * replaced by the default one and reported once); throws only {@link ContextCallbackError}.
   * Positional, so that the default generator costs no allocation; a user generator gets them as a {@link GenerateInput}.
   */
  readonly generate: (source: ContextSource, request?: IncomingMessage, headers?: GenerateInput['headers']) => string;
  /** The field of the context that holds the correlation id, or `undefined` (`correlationIdField: false`). */
  readonly correlationIdField: string | undefined;
  /** Whether the response header is added to `Access-Control-Expose-Headers`. */
  readonly exposeHeader: boolean;
  /** The field of Nest's JSON error bodies that receives the correlation id, or `undefined` for none. */
  readonly errorBodyField: string | undefined;
  /** `undefined` when every request is trusted, `false` when none is, else a predicate. */
  readonly trustCorrelationId: Trust;
  readonly trustTrace: Trust;
  readonly trustBaggage: Trust;
  /** Whether all three trust policies trust every request (the common, fastest case). */
  readonly trustsAll: boolean;
  readonly outboundHeader: string | undefined;
  readonly trace: { readonly sampleNewTraces: boolean; readonly maxTracestateLength: number };
  readonly baggage: {
    /** Declared `[field, baggage key]` pairs. */
    readonly fields: readonly (readonly [field: string, key: string])[];
    readonly propagateInbound: boolean;
    readonly limits: { readonly maxMembers: number; readonly maxBytes: number };
  };
  readonly enterEarly: boolean;
  /** The app's trace source, set and cleared by `setTraceSource()` (see `record/trace-source.ts`); present from the start so every app's options share one shape. */
  traceSource: TraceSource | undefined;
}

/** A resolved trust policy: `undefined` trusts everything, `false` nothing. @internal */
export type Trust = ((request: IncomingMessage) => boolean) | undefined | false;

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function checkHeaderName(name: unknown, option: string): string {
  if (typeof name !== 'string' || !HEADER_NAME.test(name)) {
    throw ContextConfigError.create(
      `option ${option} must be an HTTP header name, got ${describe(name)}`,
      `Use a token such as 'x-request-id'.`,
    );
  }
  return name.toLowerCase();
}

function checkFunction<F>(value: unknown, option: string, fallback: F): F {
  if (value === undefined) return fallback;
  if (typeof value !== 'function') {
    throw ContextConfigError.create(`option ${option} must be a function, got ${describe(value)}`, 'Pass a function or leave it out.');
  }
  return value as F;
}

function resolveTrust(value: TrustInbound | undefined, option: string): Trust {
  if (value === undefined || value === true) return undefined;
  if (value === false) return false;
  if (typeof value === 'function') return checkedTrust(value, option);
  throw ContextConfigError.create(
    `option ${option} must be true, false or a function of the request, got ${describe(value)}`,
    'See TrustInbound in the README.',
  );
}

/** Checks that `contextClass` is a class; fails at bootstrap with a message saying how to call forRoot. @internal */
export function checkContextClass(contextClass: unknown, method: string): asserts contextClass is Type<object> {
  if (typeof contextClass !== 'function' || !contextClass.prototype) {
    throw ContextConfigError.create(
      `${method}() needs your context class as its first argument, got ${describe(contextClass)}`,
      `Call ContextModule.${method}(MyContext${method === 'forRoot' ? ', options?' : ', { useFactory }'}) where MyContext is a class.`,
    );
  }
}

/** Checks the `injection` switch of `forRoot`/`forRootAsync`; fails at bootstrap with the accepted values. @internal */
export function checkInjection(value: unknown, method: string): ContextInjection {
  if (value === undefined) return 'request';
  if (value !== 'request' && value !== 'proxy') {
    throw ContextConfigError.create(
      `option injection of ${method}() must be 'request' or 'proxy', got ${describe(value)}`,
      `Use 'proxy' to inject your context class as a singleton that resolves to the current context, or leave it out for a request-scoped provider.`,
    );
  }
  return value;
}

const optionsLogger = new Logger('ContextModule');

/**
 * Fills the correlation id field when the user left it undefined. A field that holds something else
 * than the library's id (a class that makes its own, as the seed's did) is warned about once per app:
 * the response header, `ContextService.correlationId` and the log lines carry the library's id.
 */
function buildFill<T extends object>(contextClass: Type<T>, field: string | false): (context: T, correlationId: string) => T {
  if (field === false) return (context) => context;
  let warned = false;
  return (context, correlationId) => {
    const value = (context as Record<string, unknown>)[field];
    if (value === undefined) (context as Record<string, unknown>)[field] = correlationId;
    else if (value !== correlationId && !warned) {
      warned = true;
      warnOwnId(contextClass, field, value, correlationId);
    }
    return context;
  };
}

function warnOwnId(contextClass: Type<object>, field: string, value: unknown, correlationId: string): void {
  const name = contextClass.name || 'your context class';
  try {
    optionsLogger.warn(
      `${name}.${field} holds ${describe(value)}, not this context's correlation id ${JSON.stringify(correlationId)}: ` +
        `the response header, ContextService.correlationId, outgoing calls and log lines carry the library's id, so they ` +
        `will not match ${name}.${field}. Take the id from the ContextInit argument of the constructor instead of making ` +
        `one: constructor({ correlationId }: ContextInit) { this.${field} = correlationId; } (or set correlationIdField: false ` +
        `if the field means something else). Warned once per app.`,
    );
  } catch {
    // A logger that throws must not fail the request.
  }
}

function buildFactory<T extends object>(
  contextClass: Type<T>,
  factory: ContextFactory<T> | undefined,
  fill: (context: T, correlationId: string) => T,
): ContextFactory<T> {
  const make: ContextFactory<T> = factory ?? ((init) => new contextClass(init));
  return (init) => {
    const value: unknown = make(init);
    if (value === null || (typeof value !== 'object' && typeof value !== 'function')) {
      throw ContextCreationError.create(contextClass.name, `the factory returned ${describe(value)}; it must return an object.`);
    }
    if (typeof (value as { then?: unknown }).then === 'function') {
      throw ContextCreationError.create(
        contextClass.name,
        'the factory returned a promise; it must be synchronous. Load async data in a guard or middleware and store it on the context.',
      );
    }
    return fill(value as T, init.correlationId);
  };
}

/** Merges the defaults into `options` and checks every value, in one place. @internal */
export function resolveOptions<T extends object>(
  contextClass: Type<T>,
  options: ContextModuleOptions<T> | undefined,
): ResolvedContextOptions<T> {
  if (options === undefined || options === null) options = {};
  if (typeof options !== 'object') {
    throw ContextConfigError.create(`the options must be an object, got ${describe(options)}`, 'Pass an options object or leave it out.');
  }
  const cid = section(options.correlationId, 'correlationId');
  const trace = section<TraceOptions>(options.trace, 'trace');
  const baggage = section<BaggageOptions>(options.baggage, 'baggage');
  const requestHeaders = cid.requestHeaders ?? DEFAULT_REQUEST_HEADERS;
  if (!Array.isArray(requestHeaders)) {
    throw ContextConfigError.create(
      `option correlationId.requestHeaders must be an array of header names, got ${describe(requestHeaders)}`,
      `Pass e.g. ['x-request-id'], or [] to never read an inbound id.`,
    );
  }
  const responseHeader = cid.responseHeader ?? DEFAULT_RESPONSE_HEADER;
  const field = options.correlationIdField ?? 'correlationId';
  if (field !== false && typeof field !== 'string') {
    throw ContextConfigError.create(`option correlationIdField must be a field name or false, got ${describe(field)}`, `Use e.g. 'correlationId'.`);
  }
  const generate = checkFunction<(input: GenerateInput) => string | undefined>(cid.generate, 'correlationId.generate', generateCorrelationId);
  const fill = buildFill<T>(contextClass, field);
  const validate = checkedValidator(checkFunction(cid.validate, 'correlationId.validate', isValidCorrelationId));
  const resolvedResponseHeader = responseHeader === false ? undefined : checkHeaderName(responseHeader, 'correlationId.responseHeader');
  const trustCorrelationId = resolveSectionTrust(cid, 'correlationId', options.trustInbound);
  const trustTrace = resolveSectionTrust(trace, 'trace', options.trustInbound);
  const trustBaggage = resolveSectionTrust(baggage, 'baggage', options.trustInbound);
  return {
    contextClass,
    factory: buildFactory(contextClass, checkFunction(options.factory, 'factory', undefined), fill),
    fill,
    requestHeaders: requestHeaders.map((name, i) => checkHeaderName(name, `correlationId.requestHeaders[${i}]`)),
    responseHeader: resolvedResponseHeader,
    validate,
    generate: generate === generateCorrelationId ? generateCorrelationId : checkedGenerator(generate, validate),
    correlationIdField: field === false ? undefined : field,
    exposeHeader: resolveExposeHeader(cid.exposeHeader, resolvedResponseHeader),
    errorBodyField: resolveErrorBody(cid.errorBody),
    trustCorrelationId,
    trustTrace,
    trustBaggage,
    trustsAll: trustCorrelationId === undefined && trustTrace === undefined && trustBaggage === undefined,
    outboundHeader: resolveOutboundHeader(cid.outboundHeader, requestHeaders),
    trace: {
      sampleNewTraces: trace.sampleNewTraces === true,
      maxTracestateLength: positiveInteger(trace.maxTracestateLength, 'trace.maxTracestateLength', 512),
    },
    baggage: {
      fields: resolveBaggageFields(baggage.fields),
      propagateInbound: baggage.propagateInbound ?? true,
      limits: {
        maxMembers: positiveInteger(baggage.maxMembers, 'baggage.maxMembers', 64),
        maxBytes: positiveInteger(baggage.maxBytes, 'baggage.maxBytes', 8192),
      },
    },
    enterEarly: options.enterEarly ?? true,
    traceSource: undefined,
  };
}

function section<S extends object>(value: S | undefined, name: string): S {
  if (value === undefined) return {} as S;
  if (value === null || typeof value !== 'object') {
    throw ContextConfigError.create(`option ${name} must be an object, got ${describe(value)}`, `See ${name} in the README's options table.`);
  }
  return value;
}

function resolveSectionTrust(sectionOptions: { trustInbound?: TrustInbound }, name: string, fallback: TrustInbound | undefined): Trust {
  const own = sectionOptions.trustInbound;
  return resolveTrust(own ?? fallback, own === undefined ? 'trustInbound' : `${name}.trustInbound`);
}

function resolveOutboundHeader(value: string | false | undefined, requestHeaders: readonly string[]): string | undefined {
  if (value === false) return undefined;
  if (value === undefined) return (requestHeaders[0] as string | undefined)?.toLowerCase() ?? DEFAULT_RESPONSE_HEADER;
  return checkHeaderName(value, 'correlationId.outboundHeader');
}

function resolveExposeHeader(value: unknown, responseHeader: string | undefined): boolean {
  if (value === undefined || value === false) return false;
  if (value !== true) {
    throw ContextConfigError.create(`option correlationId.exposeHeader must be true or false, got ${describe(value)}`, 'Leave it out for false.');
  }
  if (responseHeader === undefined) {
    throw ContextConfigError.create(
      'option correlationId.exposeHeader is true but correlationId.responseHeader is false, so there is no header to expose',
      'Set a responseHeader (the default is x-request-id), or leave exposeHeader out.',
    );
  }
  return true;
}

function resolveErrorBody(value: unknown): string | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return 'correlationId';
  if (typeof value !== 'string' || value === '' || FORBIDDEN_FIELDS.has(value)) {
    throw ContextConfigError.create(
      `option correlationId.errorBody must be true, false or a field name, got ${describe(value)}`,
      `Use true (the field is correlationId) or a name such as 'requestId'.`,
    );
  }
  return value;
}

function positiveInteger(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw ContextConfigError.create(`option ${name} must be a positive integer, got ${describe(value)}`, `Leave it out for the default (${fallback}).`);
  }
  return value;
}

const BAGGAGE_KEY = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FORBIDDEN_FIELDS = new Set(['__proto__', 'constructor', 'prototype']);

function resolveBaggageFields(fields: BaggageOptions['fields']): readonly (readonly [string, string])[] {
  if (fields === undefined) return [];
  const pairs: [string, string][] = Array.isArray(fields)
    ? (fields as readonly string[]).map((f) => [f, f])
    : fields !== null && typeof fields === 'object'
      ? Object.entries(fields as Record<string, string>)
      : (() => {
          throw ContextConfigError.create(
            `option baggage.fields must be a list of field names or a map from field name to baggage key, got ${describe(fields)}`,
            `Use e.g. ['tenantId'] or { tenantId: 'tenant.id' }.`,
          );
        })();
  for (const [field, key] of pairs) {
    if (typeof field !== 'string' || field === '' || FORBIDDEN_FIELDS.has(field)) {
      throw ContextConfigError.create(`baggage.fields names an unusable context field: ${describe(field)}`, 'Name ordinary fields of your context class.');
    }
    if (typeof key !== 'string' || !BAGGAGE_KEY.test(key)) {
      throw ContextConfigError.create(`baggage.fields maps ${field} to ${describe(key)}, which is not a valid baggage key`, 'Baggage keys are HTTP tokens, e.g. tenant.id.');
    }
  }
  return pairs;
}

/** Longest id a user generator may return (it is echoed as a header and sent on every outgoing call). */
const MAX_GENERATED_ID_LENGTH = 1024;

/**
 * A user generator, checked. What it throws, and a return that is neither a string nor `undefined`,
 * become a {@link ContextCallbackError}. `undefined` gives the default id. A string that cannot be
 * a correlation id (empty, longer than 1024 characters, not sendable as a header value) or that
 * `validate` rejects — it may be derived from inbound data — gives the default id, and the first
 * such id of the app is logged as a warning (a flood of bad inbound data does not flood the log).
 * A `validate` that throws on it is a {@link ContextCallbackError} too.
 */
function checkedGenerator(
  generate: (input: GenerateInput) => string | undefined,
  validate: (id: string) => boolean,
): ResolvedContextOptions<object>['generate'] {
  let warned = false;
  return (source, request, headers) => {
    let id: unknown;
    try {
      const input: { source: ContextSource; request?: IncomingMessage; headers?: GenerateInput['headers'] } = { source };
      if (request !== undefined) input.request = request;
      if (headers !== undefined) input.headers = headers;
      id = generate(input);
    } catch (error) {
      throw ContextCallbackError.create('correlationId.generate', `threw ${describeError(error)}`, error);
    }
    if (id === undefined) return generateCorrelationId();
    if (typeof id !== 'string') {
      throw ContextCallbackError.create(
        'correlationId.generate',
        `returned ${describe(id)}, which cannot be a correlation id (return a string, or undefined for the default id)`,
      );
    }
    if (id.length > 0 && id.length <= MAX_GENERATED_ID_LENGTH && isHeaderValue(id) && validate(id)) return id;
    if (!warned) {
      warned = true;
      try {
        optionsLogger.warn(
          `correlationId.generate returned ${describe(id)}, which this app's correlationId.validate rejects (or which ` +
            `cannot be sent as a header value: empty, over ${MAX_GENERATED_ID_LENGTH} characters, control characters); ` +
            `the ${String(source)} context got a default id instead. Make generate return ids that validate accepts, ` +
            `or undefined for the default id. Warned once per app.`,
        );
      } catch {
        // A logger that throws must not fail the request.
      }
    }
    return generateCorrelationId();
  };
}

/**
 * A user validator, checked: it accepts an id only by returning `true`, and never an id that cannot be
 * echoed as a header value; what it throws becomes a {@link ContextCallbackError}. The default
 * validator is used as it is (it only accepts header-safe ids).
 */
function checkedValidator(validate: (id: string) => boolean): (id: string) => boolean {
  if (validate === isValidCorrelationId) return validate;
  return (id) => {
    let ok: unknown;
    try {
      ok = validate(id);
    } catch (error) {
      throw ContextCallbackError.create('correlationId.validate', `threw ${describeError(error)}`, error);
    }
    return ok === true && typeof id === 'string' && isHeaderValue(id);
  };
}

/** A user trust predicate, checked: only `true` trusts; what it throws becomes a {@link ContextCallbackError}. */
function checkedTrust(trust: (request: IncomingMessage) => boolean, option: string): (request: IncomingMessage) => boolean {
  // One wrapper per predicate and option name, so that a predicate shared by the three sections is
  // still evaluated once per request (the host caches by predicate identity).
  let byOption = checkedTrusts.get(trust);
  if (byOption === undefined) checkedTrusts.set(trust, (byOption = new Map()));
  let checked = byOption.get(option);
  if (checked === undefined) byOption.set(option, (checked = makeCheckedTrust(trust, option)));
  return checked;
}

const checkedTrusts = new WeakMap<(request: IncomingMessage) => boolean, Map<string, (request: IncomingMessage) => boolean>>();

function makeCheckedTrust(trust: (request: IncomingMessage) => boolean, option: string): (request: IncomingMessage) => boolean {
  return (request) => {
    try {
      return trust(request) === true;
    } catch (error) {
      throw ContextCallbackError.create(option, `threw ${describeError(error)}`, error);
    }
  };
}

/**
 * The id a given context object already holds in its correlation id field, when it is one the app
 * accepts (else `undefined`; a validator that throws counts as a rejection): `run({ context })`
 * opens the context under that id, so that the object and the library agree. @internal
 */
export function ownCorrelationId<T extends object>(options: ResolvedContextOptions<T>, context: T | undefined): string | undefined {
  const field = options.correlationIdField;
  if (context === undefined || context === null || field === undefined) return undefined;
  try {
    const own = (context as Record<string, unknown>)[field];
    return typeof own === 'string' && options.validate(own) ? own : undefined;
  } catch {
    return undefined;
  }
}

/** `TypeError: message` for an error, else a short description. @internal */
export function describeError(error: unknown): string {
  try {
    if (error instanceof Error) return `${String(error.name)}: ${String(error.message).slice(0, 200)}`;
    return describe(error);
  } catch {
    return 'a value that cannot be described (reading it threw)';
  }
}
