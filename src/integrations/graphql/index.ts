/**
 * `nestjs-context/graphql`: one context per GraphQL operation for `@nestjs/graphql` apps (Apollo
 * on Express or Fastify, Mercurius), subscriptions included — one per subscription, continued from
 * the connection's handshake headers and `connectionParams`, alive for every event it emits.
 *
 * @module nestjs-context/graphql
 */
import type { IncomingMessage } from 'node:http';
import { Inject, Injectable, Module, Optional, type DynamicModule, type OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryModule, DiscoveryService } from '@nestjs/core';
import { ContextHost } from '../../runtime/context-host.js';
import { storage, type Carrier, type ContextRecord } from '../../record/context-record.js';
import { hostOrThrow } from '../../runtime/apps.js';
import { ContextConfigError } from '../../errors.js';

/** Options of {@link ContextGraphQLModule.forRoot}. */
export interface ContextGraphQLOptions {
  /**
   * Read the connection's `connectionParams` (the `connection_init` payload of graphql-ws and
   * Mercurius; a nested `headers` object in it too) as inbound metadata of the operations sent over
   * that WebSocket, besides the handshake headers. A handshake header wins over a parameter of the
   * same name. The app's trust policy (`trustInbound` and its per-kind overrides) applies to both,
   * evaluated on the handshake request. Default: `true`.
   */
  connectionParams?: boolean;
  /**
   * Add the correlation id to the `extensions` of every error a resolver throws, under this key
   * (`true`: `'correlationId'`), so clients can quote it. Errors GraphQL raises before any resolver
   * runs (parse, validation) carry none; over HTTP the response header has it either way.
   * Default: `false`.
   */
  errorExtension?: boolean | string;
}

/** Injection token of the {@link ContextGraphQLOptions}. */
const CONTEXT_GRAPHQL_OPTIONS = Symbol.for('nestjs-context:graphql-options');

/** Handshake headers read besides the app's correlation id headers. */
const TRACE_HEADERS = ['traceparent', 'tracestate', 'baggage'];
/** Most values of one repeated header (or list parameter) kept. */
const MAX_VALUES = 16;
/** Marks the resolvers this integration wrapped (never wrapped twice, e.g. by a second app on one schema). */
const WRAPPED = Symbol.for('nestjs-context:graphql-wrapped');

type AnyFn = (...args: unknown[]) => unknown;
type Resolver = ((source: unknown, args: unknown, context: unknown, info: unknown) => unknown) & { [WRAPPED]?: true };

/** A field of a GraphQL object type, as far as this integration touches it. */
interface FieldLike {
  resolve?: Resolver;
  subscribe?: Resolver;
}
/** A `GraphQLSchema`, as far as this integration reads it (no runtime dependency on `graphql`). */
interface SchemaLike {
  getTypeMap(): Record<string, unknown>;
}

/** The WebSocket connection an operation came over: its handshake request and `connectionParams`. */
interface Connection {
  request: IncomingMessage | undefined;
  headers: unknown;
  params: unknown;
}

/** `target[key]`, or `undefined` when `target` is no object or the read throws (a getter, a revoked Proxy). */
function read(target: unknown, key: string): unknown {
  if (target === null || (typeof target !== 'object' && typeof target !== 'function')) return undefined;
  try {
    return (target as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}

/** Whether `target` has `key` (own or inherited); `false` when that cannot be asked. */
function has(target: unknown, key: string): boolean {
  if (target === null || typeof target !== 'object') return false;
  try {
    return key in target;
  } catch {
    return false;
  }
}

/**
 * The WebSocket connection of a GraphQL context object as the drivers build it, or `undefined` for an
 * operation that did not come over a WebSocket:
 * - Apollo (`@nestjs/apollo` serves subscriptions with graphql-ws): `{ req: graphql-ws Context }`,
 *   whose `connectionParams` and `extra.request` (the handshake) are the connection's;
 * - Mercurius: `{ request: the handshake's FastifyRequest, _connectionInit: connectionParams, … }`;
 * - graphql-ws used directly with `context: (ctx) => ctx`: the graphql-ws Context itself.
 */
function connectionOf(context: unknown): Connection | undefined {
  const req = read(context, 'req');
  const ws = has(req, 'connectionParams') && has(req, 'extra') ? req : has(context, 'connectionParams') && has(context, 'extra') ? context : undefined;
  if (ws !== undefined) {
    const request = read(read(ws, 'extra'), 'request');
    return { request: incoming(request), headers: read(request, 'headers'), params: read(ws, 'connectionParams') };
  }
  if (has(context, '_connectionInit')) {
    const request = read(context, 'request');
    const raw = incoming(read(request, 'raw')) ?? incoming(request);
    return { request: raw, headers: read(raw, 'headers'), params: read(context, '_connectionInit') };
  }
  return undefined;
}

/** `value` if it looks like Node's `IncomingMessage` (an object with a headers object). */
function incoming(value: unknown): IncomingMessage | undefined {
  const headers = read(value, 'headers');
  return headers !== null && typeof headers === 'object' ? (value as IncomingMessage) : undefined;
}

/** The HTTP request a GraphQL context object holds (`req`: Express' request, Fastify's wrapper). */
function httpRequestOf(context: unknown): IncomingMessage | undefined {
  return incoming(read(context, 'req'));
}

/** The response of that request, to echo the id on: `res` (Apollo), Express' `req.res`, Mercurius' `reply`. */
function httpResponseOf(context: unknown, request: IncomingMessage): object | undefined {
  const response = read(context, 'res') ?? read(request, 'res') ?? read(context, 'reply');
  return response !== null && typeof response === 'object' ? response : undefined;
}

/** Longest value taken from a handshake or `connectionParams` (as every entry: a baggage header is capped at 8192 bytes). */
const MAX_VALUE_LENGTH = 8192;

const usable = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= MAX_VALUE_LENGTH;

/** A header or parameter value as a carrier keeps it: a string, or a bounded list of strings, each at most 8192 characters. */
function carrierValue(value: unknown): string | readonly string[] | undefined {
  if (usable(value)) return value;
  if (!Array.isArray(value)) return undefined;
  const list: string[] = [];
  const n = Math.min(value.length, MAX_VALUES);
  for (let i = 0; i < n; i++) {
    const item: unknown = value[i];
    if (usable(item)) list.push(item);
  }
  return list.length > 0 ? list : undefined;
}

/** The own keys of `params`, lower-cased, mapped to their original spelling (never throws). */
function keysOf(params: unknown): Map<string, string> {
  const keys = new Map<string, string>();
  if (params === null || typeof params !== 'object') return keys;
  try {
    for (const key of Object.keys(params)) {
      const lower = key.toLowerCase();
      if (!keys.has(lower)) keys.set(lower, key);
      if (keys.size > 256) break; // a client sending thousands of parameters gets the first ones read
    }
  } catch {
    // A Proxy that refuses ownKeys: no parameters.
  }
  return keys;
}

/**
 * The inbound carrier of a connection: the handshake's headers `names`, and where the handshake has
 * none of a name, the `connectionParams` entry (or its `headers` object's) of that name, matched
 * case-insensitively. Copied into a prototype-free object of strings: the connection's own objects
 * never reach the context (it reads its carrier lazily).
 */
function carrierOf(connection: Connection, names: readonly string[], withParams: boolean): Carrier {
  const out = Object.create(null) as Record<string, string | readonly string[]>;
  const headers = connection.headers;
  for (const name of names) {
    try {
      if (headers !== null && typeof headers === 'object' && Object.prototype.hasOwnProperty.call(headers, name)) {
        const value = carrierValue(read(headers, name));
        if (value !== undefined) out[name] = value;
      }
    } catch {
      // A header that cannot be read is left out.
    }
  }
  if (!withParams) return out;
  const nested = read(connection.params, 'headers');
  const sources = nested !== null && typeof nested === 'object' ? [nested, connection.params] : [connection.params];
  for (const params of sources) {
    const keys = keysOf(params);
    for (const name of names) {
      if (out[name] !== undefined) continue;
      const key = keys.get(name);
      const value = key === undefined ? undefined : carrierValue(read(params, key));
      if (value !== undefined) out[name] = value;
    }
  }
  return out;
}

/** `result` as an async iterable whose iteration (`next`, `return`, `throw`) runs inside `record`. */
function iterateIn(result: unknown, record: ContextRecord): unknown {
  const source = result as { [Symbol.asyncIterator]?: () => AsyncIterator<unknown> } | null;
  if (source === null || typeof source !== 'object' || typeof source[Symbol.asyncIterator] !== 'function') return result;
  let iterator: AsyncIterator<unknown> | undefined;
  const inner = (): AsyncIterator<unknown> =>
    (iterator ??= storage.run(record, () => (source[Symbol.asyncIterator] as () => AsyncIterator<unknown>).call(source)));
  const wrapped: AsyncIterableIterator<unknown> = {
    next: (...args: [] | [unknown]) => storage.run(record, () => inner().next(...args)),
    // Called as methods of the source iterator: an async generator's refuse any other receiver.
    return: (value?: unknown) => {
      const it = inner();
      const end = it.return;
      return typeof end === 'function' ? storage.run(record, () => end.call(it, value)) : Promise.resolve({ done: true, value });
    },
    throw: (error?: unknown) => {
      const it = inner();
      const fail = it.throw;
      return typeof fail === 'function'
        ? storage.run(record, () => fail.call(it, error))
        : Promise.reject(error instanceof Error ? error : new Error(String(error)));
    },
    [Symbol.asyncIterator]() {
      return wrapped;
    },
  };
  return wrapped;
}

/**
 * Runs every resolver of the app's GraphQL schema inside the context of its operation, by wrapping
 * the schema's field resolvers (`resolve` and `subscribe`) once the app has built it; unwraps them
 * when the app closes. One context per operation: the HTTP request's for queries and mutations over
 * HTTP (a batch shares it), a new one per operation sent over a WebSocket (each subscription its own,
 * kept for all its events). The context is found through the operation's GraphQL context object,
 * which the drivers create once per operation and hand to every resolver.
 * @internal
 */
@Injectable()
class ContextGraphQLSetup implements OnApplicationBootstrap {
  private readonly host: ContextHost;
  /** GraphQL context object of an operation → its record. */
  private readonly records = new WeakMap<object, ContextRecord>();
  /** The handshake headers read: the trace headers and the app's correlation id headers. */
  private readonly names: readonly string[];
  private readonly withParams: boolean;
  private readonly errorKey: string | undefined;

  constructor(
    @Optional() @Inject(ContextHost) host: ContextHost | undefined,
    private readonly discovery: DiscoveryService,
    @Optional() @Inject(CONTEXT_GRAPHQL_OPTIONS) options: ContextGraphQLOptions = {},
  ) {
    this.host = hostOrThrow(host, 'ContextGraphQLModule');
    const { connectionParams = true, errorExtension = false } = options ?? {};
    if (typeof connectionParams !== 'boolean') {
      throw new ContextConfigError(
        `ContextGraphQLModule.forRoot(): connectionParams must be a boolean, got ${typeof connectionParams}. ` +
          'Leave it out to read the connection parameters, or pass false to read the handshake headers only.',
      );
    }
    if (typeof errorExtension !== 'boolean' && (typeof errorExtension !== 'string' || errorExtension === '')) {
      throw new ContextConfigError(
        `ContextGraphQLModule.forRoot(): errorExtension must be a boolean or a non-empty string, got ${JSON.stringify(errorExtension) ?? typeof errorExtension}. ` +
          "Pass true (the key 'correlationId'), a key of your own such as 'requestId', or leave it out.",
      );
    }
    this.withParams = connectionParams;
    this.errorKey = errorExtension === true ? 'correlationId' : errorExtension === false ? undefined : errorExtension;
    this.names = [...new Set([...TRACE_HEADERS, ...this.host.options.requestHeaders.map((name) => name.toLowerCase())])];
  }

  /** Wraps the resolvers of every GraphQL schema of the app (built by `GraphQLModule` during init). */
  onApplicationBootstrap(): void {
    const schemas = new Set<SchemaLike>();
    for (const wrapper of this.discovery.getProviders()) {
      // GraphQLSchemaHost of @nestjs/graphql, found by name: no runtime import of the peer.
      if (wrapper.metatype?.name !== 'GraphQLSchemaHost') continue;
      const schema = read(wrapper.instance, 'schema'); // its getter throws while no schema is built
      if (schema !== null && typeof schema === 'object' && typeof (schema as SchemaLike).getTypeMap === 'function') schemas.add(schema as SchemaLike);
    }
    if (schemas.size === 0) {
      throw new ContextConfigError(
        'ContextGraphQLModule: this app has no GraphQL schema, so there are no resolvers to give a context. ' +
          'Import GraphQLModule.forRoot({ driver: ApolloDriver or MercuriusDriver, ... }) from @nestjs/graphql in the same app, ' +
          'or remove ContextGraphQLModule.',
      );
    }
    for (const schema of schemas) this.wrapSchema(schema);
  }

  private wrapSchema(schema: SchemaLike): void {
    const types = schema.getTypeMap();
    for (const [name, type] of Object.entries(types)) {
      if (name.startsWith('__')) continue; // introspection: no user code
      const getFields = read(type, 'getFields');
      // Object and interface types (input fields have no resolvers); scalars, enums and unions have no fields.
      if (typeof getFields !== 'function') continue;
      const fields = (getFields as () => Record<string, FieldLike>).call(type);
      for (const field of Object.values(fields)) {
        this.wrapField(field, 'resolve');
        this.wrapField(field, 'subscribe');
      }
    }
  }

  private wrapField(field: FieldLike, kind: 'resolve' | 'subscribe'): void {
    const original = field[kind];
    if (typeof original !== 'function' || original[WRAPPED] === true) return;
    const wrapped: Resolver = kind === 'resolve' ? this.resolver(original) : this.subscriber(original);
    Object.defineProperty(wrapped, WRAPPED, { value: true });
    field[kind] = wrapped;
    this.host.onClose(() => {
      if (field[kind] === wrapped) field[kind] = original;
    });
  }

  /** `resolve` run inside the operation's context; a thrown error gets the id in its extensions (option). */
  private resolver(original: Resolver): Resolver {
    // Arrow functions keep `this` the setup; graphql-js calls resolvers with `this` undefined.
    return (source, args, context, info) => {
      const record = this.recordOf(context);
      return this.call(record, original, source, args, context, info);
    };
  }

  /** `subscribe` run inside the subscription's context, and its event stream iterated inside it too. */
  private subscriber(original: Resolver): Resolver {
    return (source, args, context, info) => {
      const record = this.recordOf(context);
      const result = this.call(record, original, source, args, context, info);
      return result instanceof Promise ? result.then((stream: unknown) => iterateIn(stream, record)) : iterateIn(result, record);
    };
  }

  private call(record: ContextRecord, fn: Resolver, source: unknown, args: unknown, context: unknown, info: unknown): unknown {
    let result: unknown;
    try {
      result = storage.getStore() === record ? fn(source, args, context, info) : storage.run(record, fn as AnyFn, source, args, context, info);
    } catch (error) {
      throw this.mark(error, record);
    }
    if (this.errorKey === undefined) return result;
    // graphql-js treats an Error a resolver returns (as Nest's GraphQL exception filters do) like a thrown one.
    if (result instanceof Error) return this.mark(result, record);
    if (result instanceof Promise) {
      return result.then(
        (value: unknown) => (value instanceof Error ? this.mark(value, record) : value),
        (error: unknown) => {
          throw this.mark(error, record);
        },
      );
    }
    return result;
  }

  /** Puts the correlation id into the error's `extensions` (graphql-js copies them to the response's error). */
  private mark(error: unknown, record: ContextRecord): unknown {
    const key = this.errorKey;
    if (key === undefined || error === null || typeof error !== 'object') return error;
    try {
      const existing = read(error, 'extensions');
      const base = existing !== null && typeof existing === 'object' ? (existing as Record<string, unknown>) : {};
      if (base[key] === record.correlationId) return error;
      // A new object each time: an error instance thrown by two operations keeps each one's id.
      (error as { extensions: Record<string, unknown> }).extensions = { ...base, [key]: record.correlationId };
    } catch {
      // A frozen error, or one whose extensions cannot be set: it goes out without the id.
    }
    return error;
  }

  /**
   * The record of the operation a resolver belongs to, found or made on its first resolver:
   * 1. the one already made for this operation's GraphQL context object;
   * 2. over a WebSocket, a new one from the connection's handshake and `connectionParams` (per
   *    operation: each subscription has its own; the WebSocket's own context, if any, is not shared);
   * 3. the active one of this app (the HTTP request's, entered before the framework);
   * 4. the HTTP request's (the entry is off, or another library lost the async chain);
   * 5. a fresh one.
   */
  private recordOf(context: unknown): ContextRecord {
    const anchor = context !== null && typeof context === 'object' ? context : undefined;
    if (anchor !== undefined) {
      const found = this.records.get(anchor);
      if (found !== undefined) return found;
    }
    const host = this.host;
    let record: ContextRecord | undefined;
    const connection = connectionOf(context);
    if (connection !== undefined) {
      record = host.fromCarrier(carrierOf(connection, this.names, this.withParams), 'graphql', connection.request);
    } else {
      const active = storage.getStore();
      if (active !== undefined && active.config === host.options) record = active;
      else {
        const request = httpRequestOf(context);
        record =
          request !== undefined
            ? host.forHttp(request, httpResponseOf(context, request) as Parameters<ContextHost['forHttp']>[1])
            : host.create({ source: 'graphql' });
      }
    }
    if (anchor !== undefined) this.records.set(anchor, record);
    return record;
  }
}

/**
 * GraphQL resolvers of `@nestjs/graphql` (Apollo on Express or Fastify, Mercurius) in one context
 * per operation. Queries and mutations over HTTP already run in the request's context without it;
 * with it, every resolver, field resolver, DataLoader batch, guard, interceptor, pipe and exception
 * filter of an operation also finds it when the framework lost the async chain, and **subscriptions**
 * get one context each, continued from the connection's handshake headers and `connectionParams`
 * (correlation id, `traceparent`, `baggage`, under the app's trust policy) and alive for every
 * event they emit. The same line for every driver.
 *
 * @example
 * \@Module({
 *   imports: [
 *     ContextModule.forRoot(MyContext),
 *     GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, autoSchemaFile: true, subscriptions: { 'graphql-ws': true } }),
 *     ContextGraphQLModule.forRoot(),
 *   ],
 * })
 */
@Module({})
export class ContextGraphQLModule {
  /** Registers the integration (global). */
  static forRoot(options: ContextGraphQLOptions = {}): DynamicModule {
    return {
      module: ContextGraphQLModule,
      global: true,
      imports: [DiscoveryModule],
      providers: [{ provide: CONTEXT_GRAPHQL_OPTIONS, useValue: options }, ContextGraphQLSetup],
    };
  }
}
