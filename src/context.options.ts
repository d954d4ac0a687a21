import type { IncomingMessage } from 'node:http';
import type { Type } from '@nestjs/common';
import { DEFAULT_REQUEST_HEADERS, DEFAULT_RESPONSE_HEADER } from './context.constants.js';
import { ContextConfigError, ContextCreationError, describe } from './context.errors.js';
import type { ContextFactory } from './interfaces/context-init.interface.js';
import type { ContextModuleOptions, TrustInbound } from './interfaces/context-module-options.interface.js';
import { generateCorrelationId, isValidCorrelationId } from './propagation/correlation-id.js';

/** The options with every default filled in and every value checked. @internal */
export interface ResolvedContextOptions<T extends object> {
  readonly factory: ContextFactory<T>;
  /** Writes the correlation id into the configured field when it is still undefined. */
  readonly fill: (context: T, correlationId: string) => T;
  readonly requestHeaders: readonly string[];
  readonly responseHeader: string | undefined;
  readonly validate: (id: string) => boolean;
  readonly generate: () => string;
  /** `undefined` when every request is trusted. */
  readonly trustCorrelationId: ((request: IncomingMessage) => boolean) | undefined | false;
  readonly middleware: boolean;
}

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

function resolveTrust(value: TrustInbound | undefined, option: string): ((request: IncomingMessage) => boolean) | undefined | false {
  if (value === undefined || value === true) return undefined;
  if (value === false) return false;
  if (typeof value === 'function') return value;
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

/**
 * Wraps the user's factory (or `new contextClass(init)`) so that its result is checked and the
 * correlation id field is filled when the user left it undefined.
 */
function buildFill<T extends object>(field: string | false): (context: T, correlationId: string) => T {
  if (field === false) return (context) => context;
  return (context, correlationId) => {
    if ((context as Record<string, unknown>)[field] === undefined) (context as Record<string, unknown>)[field] = correlationId;
    return context;
  };
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
  const cid = options.correlationId ?? {};
  if (typeof cid !== 'object') {
    throw ContextConfigError.create(`option correlationId must be an object, got ${describe(cid)}`, 'See CorrelationIdOptions in the README.');
  }
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
  const generate = checkFunction<() => string>(cid.generate, 'correlationId.generate', generateCorrelationId);
  const fill = buildFill<T>(field);
  return {
    factory: buildFactory(contextClass, checkFunction(options.factory, 'factory', undefined), fill),
    fill,
    requestHeaders: requestHeaders.map((name, i) => checkHeaderName(name, `correlationId.requestHeaders[${i}]`)),
    responseHeader: responseHeader === false ? undefined : checkHeaderName(responseHeader, 'correlationId.responseHeader'),
    validate: checkFunction(cid.validate, 'correlationId.validate', isValidCorrelationId),
    generate: generate === generateCorrelationId ? generate : checkedGenerator(generate),
    trustCorrelationId: resolveTrust(cid.trustInbound ?? options.trustInbound, cid.trustInbound === undefined ? 'trustInbound' : 'correlationId.trustInbound'),
    middleware: options.middleware ?? true,
  };
}

/** A user generator that returns something other than a non-empty string falls back to a UUID. */
function checkedGenerator(generate: () => string): () => string {
  return () => {
    const id: unknown = generate();
    return typeof id === 'string' && id.length > 0 ? id : generateCorrelationId();
  };
}
