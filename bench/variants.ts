// The benchmark variants: one Nest root module each, every one serving `GET /` with a short string.
// Each server process builds exactly one of them (bench/server.ts). The library is configured only
// through its public options and read only through its public access paths, so the variants keep
// measuring the same thing while the library's internals change.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import {
  Controller,
  Get,
  Inject,
  Injectable,
  Module,
  Scope,
  type CallHandler,
  type DynamicModule,
  type ExecutionContext,
  type INestApplication,
  type NestInterceptor,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type Type,
} from '@nestjs/common';
import { APP_INTERCEPTOR, REQUEST } from '@nestjs/core';
import { trace as otelTrace } from '@opentelemetry/api';
import { ClsModule, ClsService, InjectableProxy } from 'nestjs-cls';
import pg from 'pg';
import { Observable } from 'rxjs';
import { ContextOpenTelemetryModule } from '../src/integrations/opentelemetry/index.js';
import { commentPg } from '../src/integrations/sql/index.js';
import * as lib from './lib.js';
import { ContextModule, ContextService, Ctx, currentContext, type ContextInit } from './lib.js';
import { hit, probe } from './probe.js';

/** The body of variants that do not read a correlation id: as long as one (36 characters). */
export const FIXED_BODY = 'ok-bench-fixed-body-0123456789abcdef';

/** The user's context class of every library variant. */
export class BenchContext {
  readonly correlationId: string;
  userId?: string;
  constructor(init: ContextInit) {
    this.correlationId = init.correlationId;
  }
}

type Configuration = 'interceptor' | 'fast';

/**
 * The library as the design card configures it (`interceptor`: entry before the pipeline plus the
 * global interceptor, the defaults) or in its documented fastest configuration (`fast`: the entry
 * only, `interceptor: false`). Every option is public; the correlation id options are spelled out.
 */
function contextModule(configuration: Configuration, injection: Injection = 'request'): DynamicModule {
  return ContextModule.forRoot(BenchContext, {
    correlationId: { requestHeaders: ['x-request-id', 'x-correlation-id'], responseHeader: 'x-request-id' },
    enterEarly: true,
    interceptor: configuration === 'interceptor',
    // A build without the option ignores it (the class is then request-scoped; the behaviour check still passes).
    ...(injection === 'proxy' ? ({ injection } as object) : {}),
  });
}

/** How the user's class is provided for constructor injection (the module's `injection` option). */
type Injection = 'request' | 'proxy';

// ---- optional parts of the public API, looked up at run time so an older build still runs ----

type TraceLike = { readonly traceId: string } | undefined;
const api = lib as unknown as { getOutboundHeaders?: () => Record<string, string> };

/** The trace of the current context through `ContextService.trace` (parses `traceparent`), if the library has it. */
function readTrace(service: ContextService<BenchContext>): TraceLike {
  return (service as unknown as { trace?: TraceLike }).trace;
}

/** Headers for an outgoing call, through the public `getOutboundHeaders()` (or the id alone on builds without it). */
function outboundHeaders(correlationId: string): Record<string, string> {
  return api.getOutboundHeaders !== undefined ? api.getOutboundHeaders() : { 'x-request-id': correlationId };
}

/** Whether this build of the library has the tracing/outbound API the full-path variants use. */
export const libraryFeatures = {
  outboundHeaders: typeof api.getOutboundHeaders === 'function',
  trace: 'trace' in ContextService.prototype,
};

// ---- reference variants ----

/** Serves the fixed body and touches nothing. */
@Controller()
class FixedController {
  /** GET / */
  @Get()
  index(): string {
    hit();
    return FIXED_BODY;
  }
}

@Module({ controllers: [FixedController] })
class BareModule {}

/** The reference interceptor: passes the handler through untouched. */
@Injectable()
class NoopInterceptor implements NestInterceptor {
  /** Returns the handler's Observable as is. */
  intercept(_ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle();
  }
}

@Module({ controllers: [FixedController], providers: [{ provide: APP_INTERCEPTOR, useClass: NoopInterceptor }] })
class NoopInterceptorModule {}

// ---- the library, context never touched ----

/** A root module with the library mounted and a controller that never touches the context. */
function untouched(configuration: Configuration): DynamicModule {
  @Module({})
  class UntouchedModule {}
  return { module: UntouchedModule, imports: [contextModule(configuration)], controllers: [FixedController] };
}

// ---- the library, read through each access path ----

/** Reads the context through @Ctx(). */
@Controller()
class CtxParamController {
  /** GET /: the correlation id through the parameter decorator. */
  @Get()
  index(@Ctx() ctx: BenchContext): string {
    hit();
    return ctx.correlationId;
  }
}

/** Reads the context through ContextService. */
@Controller()
class ServiceController {
  constructor(private readonly context: ContextService<BenchContext>) {}
  /** GET /: the correlation id through `ContextService.get()`. */
  @Get()
  index(): string {
    hit();
    return this.context.get().correlationId;
  }
}

/** Reads the context through the static currentContext. */
@Controller()
class CurrentContextController {
  /** GET /: the correlation id through the `currentContext` proxy. */
  @Get()
  index(): string {
    hit();
    return currentContext.correlationId as string;
  }
}

/**
 * Receives the context by constructor injection: request-scoped (scope bubbles up to it) or, with
 * `injection: 'proxy'`, a singleton proxy that resolves to the current context on every read.
 */
@Controller()
class InjectedController {
  constructor(@Inject(BenchContext) private readonly ctx: BenchContext) {}
  /** GET /: the correlation id of the injected context. */
  @Get()
  index(): string {
    hit();
    return this.ctx.correlationId;
  }
}

/** A root module with the library mounted and `controller` reading the context its own way. */
function reading(configuration: Configuration, controller: Type, injection?: Injection): DynamicModule {
  @Module({})
  class ReadingModule {}
  return { module: ReadingModule, imports: [contextModule(configuration, injection)], controllers: [controller] };
}

// ---- the full HTTP path: inbound id + traceparent parsed + response header + the context read ----

/** The full HTTP path: context read plus the inbound traceparent parsed. */
@Controller()
class FullPathController {
  constructor(private readonly context: ContextService<BenchContext>) {}
  /** GET /: the correlation id; the trace id goes to the probe for the behaviour check. */
  @Get()
  index(): string {
    hit();
    const ctx = this.context.get();
    probe.sink = readTrace(this.context)?.traceId;
    return ctx.correlationId;
  }
}

/** The same, plus the headers of an outgoing call injected into a request object. */
@Controller()
class FullPathOutboundController {
  constructor(private readonly context: ContextService<BenchContext>) {}
  /** GET /: as the full path, plus an outgoing request object with the context's headers. */
  @Get()
  index(): string {
    hit();
    const ctx = this.context.get();
    const traceId = readTrace(this.context)?.traceId;
    const request = {
      method: 'GET',
      url: 'http://127.0.0.1:9/downstream',
      headers: { accept: 'application/json' } as Record<string, string>,
    };
    const outbound = outboundHeaders(ctx.correlationId);
    for (const name in outbound) request.headers[name] = outbound[name] as string;
    probe.sink = { traceId, request };
    return ctx.correlationId;
  }
}

// ---- peers ----

/** nestjs-cls's equivalent of a ContextService read: the generated request id. */
@Controller()
class ClsController {
  constructor(private readonly cls: ClsService) {}
  /** GET /: nestjs-cls's request id. */
  @Get()
  index(): string {
    hit();
    return this.cls.getId();
  }
}

@Module({
  imports: [ClsModule.forRoot({ global: true, middleware: { mount: true, generateId: true } })],
  controllers: [ClsController],
})
class ClsMiddlewareModule {}

/** nestjs-cls's proxy provider: a class built once per request (by its middleware) behind a singleton proxy. */
@InjectableProxy()
class ClsRequestContext {
  readonly correlationId: string;
  constructor(cls: ClsService) {
    this.correlationId = cls.getId();
  }
}

/** Injects nestjs-cls's proxy provider and reads it: the peer of the library's `injection: 'proxy'`. */
@Controller()
class ClsProxyController {
  constructor(private readonly ctx: ClsRequestContext) {}
  /** GET /: the id through the proxy provider. */
  @Get()
  index(): string {
    hit();
    return this.ctx.correlationId;
  }
}

@Module({
  imports: [ClsModule.forRoot({ global: true, middleware: { mount: true, generateId: true }, proxyProviders: [ClsRequestContext] })],
  controllers: [ClsProxyController],
})
class ClsProxyModule {}

/** What users write by hand without the library: a request-scoped provider that reads the request. */
@Injectable({ scope: Scope.REQUEST })
class RequestScopedState {
  readonly correlationId: string;
  constructor(@Inject(REQUEST) request: { headers: Record<string, string | string[] | undefined> }) {
    const id = request.headers['x-request-id'];
    this.correlationId = typeof id === 'string' ? id : FIXED_BODY;
  }
}

/** Injects the request-scoped state, so it is request-scoped too. */
@Controller()
class RequestScopedController {
  constructor(private readonly state: RequestScopedState) {}
  /** GET /: the id the request-scoped state read. */
  @Get()
  index(): string {
    hit();
    return this.state.correlationId;
  }
}

@Module({ controllers: [RequestScopedController], providers: [RequestScopedState] })
class RequestScopeModule {}

/** The same plus a do-nothing global interceptor: the floor of request scope in the default configuration. */
@Module({
  controllers: [RequestScopedController],
  providers: [RequestScopedState, { provide: APP_INTERCEPTOR, useClass: NoopInterceptor }],
})
class RequestScopeInterceptorModule {}

// ---- hand-written references for where the context is entered (opt-in; they size src/ changes) ----

/** What a hand-written entry does: validated inbound id (or a UUID), echoed, in its own AsyncLocalStorage. */
const handStorage = new AsyncLocalStorage<{ correlationId: string }>();
const HAND_VALID = /^[A-Za-z0-9._:-]{1,128}$/;
function handRecord(req: IncomingMessage, res: ServerResponse): { correlationId: string } {
  const inbound = req.headers['x-request-id'];
  const correlationId = typeof inbound === 'string' && HAND_VALID.test(inbound) ? inbound : randomUUID();
  res.setHeader('x-request-id', correlationId);
  return { correlationId };
}

/** Reads the hand-written entry's store. */
@Controller()
class HandController {
  /** GET /: the correlation id from the hand-written AsyncLocalStorage. */
  @Get()
  index(): string {
    hit();
    return (handStorage.getStore() as { correlationId: string }).correlationId;
  }
}

@Module({ controllers: [HandController] })
class HandModule {}

/** Entered by a middleware added with `app.use()` (first in the chain). */
function handMiddleware(app: INestApplication): void {
  app.use((req: IncomingMessage, res: ServerResponse, next: () => void) => handStorage.run(handRecord(req, res), next));
}

/**
 * Entered by a global interceptor (the design card's shape written by hand): the handler's
 * Observable is subscribed inside the store. Fastify hands out its wrappers: the raw response takes the header.
 */
@Injectable()
class HandInterceptor implements NestInterceptor {
  /** Subscribes the handler inside a new store for this request. */
  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const res = ctx.getArgByIndex<ServerResponse & { raw?: ServerResponse }>(1);
    const record = handRecord(ctx.getArgByIndex<IncomingMessage>(0), res.raw ?? res);
    return new Observable((subscriber) => handStorage.run(record, () => next.handle().subscribe(subscriber)));
  }
}

@Module({ controllers: [HandController], providers: [{ provide: APP_INTERCEPTOR, useClass: HandInterceptor }] })
class HandInterceptorModule {}

/** Entered by wrapping the HTTP server's own `request` listener: no framework layer at all. */
function handListener(app: INestApplication): void {
  const server = app.getHttpServer() as Server;
  const listeners = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  if (listeners.length !== 1) throw new Error(`expected one request listener, found ${listeners.length}`);
  const handler = listeners[0] as (req: IncomingMessage, res: ServerResponse) => void;
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => handStorage.run(handRecord(req, res), handler, req, res));
}

// ---- a request that runs one statement through pg, with and without the SQL comment (opt-in: they need PostgreSQL) ----

/** PostgreSQL of the SQL variants: the machine's (trust auth, database `test`), or libpq's PG* variables. */
const PG_CONFIG = {
  host: process.env.PGHOST ?? '127.0.0.1',
  port: Number(process.env.PGPORT ?? 5432),
  user: process.env.PGUSER ?? 'postgres',
  database: process.env.PGDATABASE ?? 'test',
  // As many connections as the counted load's batch (16 concurrent requests): a statement never waits for a connection.
  max: 16,
};

/** The SQL variants' pool: the same settings in both; only `commentPg` differs. Checked at start, closed with the app. */
@Injectable()
class BenchPool implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly pool: pg.Pool;
  constructor(comment: boolean) {
    const pool = new pg.Pool(PG_CONFIG);
    pool.on('error', () => undefined);
    this.pool = comment ? commentPg(pool) : pool;
  }
  /** Fails the server's start, naming PostgreSQL, when it does not answer; opens the pool's connections. */
  async onApplicationBootstrap(): Promise<void> {
    try {
      await Promise.all(Array.from({ length: PG_CONFIG.max }, () => this.pool.query('SELECT 1')));
    } catch (error) {
      throw new Error(
        `the SQL variants need PostgreSQL on ${PG_CONFIG.host}:${PG_CONFIG.port} (user ${PG_CONFIG.user}, database ${PG_CONFIG.database}, ` +
          `no password; PGHOST/PGPORT/PGUSER/PGDATABASE override): ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
  /** Ends the pool. */
  async onApplicationShutdown(): Promise<void> {
    await this.pool.end();
  }
}

/** Runs `SELECT 1` through the pool, then reads the context as the ContextService variant does. */
@Controller()
class SqlController {
  constructor(
    private readonly db: BenchPool,
    private readonly context: ContextService<BenchContext>,
  ) {}
  /** GET /: one `SELECT 1`, then the correlation id. */
  @Get()
  async index(): Promise<string> {
    hit();
    await this.db.pool.query('SELECT 1');
    return this.context.get().correlationId;
  }
  /** GET /sql-check (behaviour check only): the text of a statement as PostgreSQL received it. */
  @Get('sql-check')
  async check(): Promise<string> {
    return (await this.db.pool.query<{ q: string }>('SELECT current_query() AS q')).rows[0]?.q ?? '';
  }
}

/** The library in its default configuration and a pg pool, commented or not. */
function sql(comment: boolean): DynamicModule {
  @Module({})
  class SqlModule {}
  return {
    module: SqlModule,
    imports: [contextModule('interceptor')],
    controllers: [SqlController],
    providers: [{ provide: BenchPool, useFactory: () => new BenchPool(comment) }],
  };
}

// ---- with the OpenTelemetry SDK (opt-in: started by the bench/otel.ts preload, `node --import`) ----

/** The active OTel span's ids, or undefined. */
function activeSpanIds(): { traceId: string; spanId: string } | undefined {
  const span = otelTrace.getActiveSpan();
  if (span === undefined) return undefined;
  const { traceId, spanId } = span.spanContext();
  return { traceId, spanId };
}

/**
 * GET /otel-check (behaviour check only, never under load): the ids of the span OTel's http
 * instrumentation opened for this request. Registered after the variant's own controller, so `GET /`
 * never reaches it.
 */
@Controller()
class OtelCheckController {
  /** GET /otel-check: `{ otel }`. */
  @Get('otel-check')
  check(): object {
    return { otel: activeSpanIds() };
  }
}

/** The same plus the trace the library's record holds (adopted from that span under the interop). */
@Controller()
class OtelContextCheckController {
  constructor(private readonly context: ContextService<BenchContext>) {}
  /** GET /otel-check: `{ otel, context }`. */
  @Get('otel-check')
  check(): object {
    const t = readTrace(this.context) as { traceId: string; spanId?: string } | undefined;
    return { otel: activeSpanIds(), context: t === undefined ? undefined : { traceId: t.traceId, spanId: t.spanId } };
  }
}

/** Bare NestJS under the OTel SDK: the same controller as `bare`. */
@Module({ controllers: [FixedController, OtelCheckController] })
class OtelBareModule {}

/**
 * The library with the OpenTelemetry interop (`ContextOpenTelemetryModule.forRoot()`, its defaults)
 * and `controller` as in the variant of the same name without OTel.
 */
function withOtel(configuration: Configuration, controller: Type): DynamicModule {
  @Module({})
  class OtelInteropModule {}
  return {
    module: OtelInteropModule,
    imports: [contextModule(configuration), ContextOpenTelemetryModule.forRoot()],
    controllers: [controller, OtelContextCheckController],
  };
}

// ---- the catalogue ----

export type Group = 'reference' | 'library' | 'peer';

export interface Variant {
  readonly name: string;
  readonly title: string;
  readonly group: Group;
  /** The library configuration (library variants only). */
  readonly configuration?: Configuration;
  /** What the body must be for the behaviour check: the fixed text, the inbound id, or anything non-empty. */
  readonly body: 'fixed' | 'inbound' | 'any';
  /** Whether the response must echo the inbound id in `x-request-id`. */
  readonly echo: boolean;
  /** Whether the handler reads the trace / builds an outbound request (checked through the probe). */
  readonly checks?: 'trace' | 'outbound' | 'sql-plain' | 'sql-comment';
  /** Whether the server runs under the OpenTelemetry SDK (bench/otel.ts preloaded), and with the library's interop. */
  readonly otel?: 'alone' | 'interop';
  /** A root module, or `'raw'` for the plain-platform reference served without Nest. */
  readonly module: () => Type | DynamicModule | 'raw';
  /** Called between NestFactory.create() and listen(). */
  readonly setup?: (app: INestApplication) => void;
}

export const variants: readonly Variant[] = [
  { name: 'raw', title: 'plain Express/Fastify, no Nest', group: 'reference', body: 'fixed', echo: false, module: () => 'raw' },
  { name: 'bare', title: 'bare NestJS', group: 'reference', body: 'fixed', echo: false, module: () => BareModule },
  { name: 'noop-icpt', title: 'a global interceptor that does nothing', group: 'reference', body: 'fixed', echo: false, module: () => NoopInterceptorModule },
  { name: 'ctx-none', title: 'library, context never touched', group: 'library', configuration: 'interceptor', body: 'fixed', echo: true, module: () => untouched('interceptor') },
  { name: 'ctx-param', title: 'library, @Ctx() read', group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, module: () => reading('interceptor', CtxParamController) },
  { name: 'ctx-service', title: 'library, ContextService read', group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, module: () => reading('interceptor', ServiceController) },
  { name: 'ctx-current', title: 'library, currentContext read', group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, module: () => reading('interceptor', CurrentContextController) },
  { name: 'ctx-inject', title: 'library, injected MyContext (request scope)', group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, module: () => reading('interceptor', InjectedController) },
  { name: 'ctx-proxy', title: "library, injected MyContext (injection: 'proxy')", group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, module: () => reading('interceptor', InjectedController, 'proxy') },
  { name: 'ctx-full', title: 'library, full HTTP path', group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, checks: 'trace', module: () => reading('interceptor', FullPathController) },
  { name: 'ctx-full-out', title: 'library, full HTTP path + outbound headers', group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, checks: 'outbound', module: () => reading('interceptor', FullPathOutboundController) },
  { name: 'fast-none', title: 'fastest config, context never touched', group: 'library', configuration: 'fast', body: 'fixed', echo: true, module: () => untouched('fast') },
  { name: 'fast-param', title: 'fastest config, @Ctx() read', group: 'library', configuration: 'fast', body: 'inbound', echo: true, module: () => reading('fast', CtxParamController) },
  { name: 'fast-service', title: 'fastest config, ContextService read', group: 'library', configuration: 'fast', body: 'inbound', echo: true, module: () => reading('fast', ServiceController) },
  { name: 'fast-current', title: 'fastest config, currentContext read', group: 'library', configuration: 'fast', body: 'inbound', echo: true, module: () => reading('fast', CurrentContextController) },
  { name: 'fast-inject', title: 'fastest config, injected MyContext', group: 'library', configuration: 'fast', body: 'inbound', echo: true, module: () => reading('fast', InjectedController) },
  { name: 'fast-proxy', title: "fastest config, injected MyContext (injection: 'proxy')", group: 'library', configuration: 'fast', body: 'inbound', echo: true, module: () => reading('fast', InjectedController, 'proxy') },
  { name: 'fast-full', title: 'fastest config, full HTTP path', group: 'library', configuration: 'fast', body: 'inbound', echo: true, checks: 'trace', module: () => reading('fast', FullPathController) },
  { name: 'fast-full-out', title: 'fastest config, full HTTP path + outbound headers', group: 'library', configuration: 'fast', body: 'inbound', echo: true, checks: 'outbound', module: () => reading('fast', FullPathOutboundController) },
  { name: 'als-mw', title: 'hand-written app.use() middleware + ALS + id + header', group: 'reference', body: 'inbound', echo: true, module: () => HandModule, setup: handMiddleware },
  { name: 'als-icpt', title: 'hand-written global interceptor + ALS + id + header', group: 'reference', body: 'inbound', echo: true, module: () => HandInterceptorModule },
  { name: 'als-listener', title: 'hand-written request-listener wrapper + ALS + id + header', group: 'reference', body: 'inbound', echo: true, module: () => HandModule, setup: handListener },
  { name: 'cls-mw', title: 'nestjs-cls, middleware mode, id generated', group: 'peer', body: 'any', echo: false, module: () => ClsMiddlewareModule },
  { name: 'cls-proxy', title: 'nestjs-cls, proxy provider injected, id generated', group: 'peer', body: 'any', echo: false, module: () => ClsProxyModule },
  { name: 'req-scope', title: 'a Scope.REQUEST provider injected into the controller', group: 'peer', body: 'inbound', echo: false, module: () => RequestScopeModule },
  { name: 'sql-pg', title: 'library, ContextService read + SELECT 1 through pg', group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, checks: 'sql-plain', module: () => sql(false) },
  { name: 'sql-pg-comment', title: 'the same with the pool wrapped by commentPg', group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, checks: 'sql-comment', module: () => sql(true) },
  { name: 'otel-bare', title: 'OTel SDK alone: bare NestJS + http instrumentation', group: 'reference', body: 'fixed', echo: false, otel: 'alone', module: () => OtelBareModule },
  { name: 'otel-ctx-full', title: 'OTel + library interop, full HTTP path', group: 'library', configuration: 'interceptor', body: 'inbound', echo: true, checks: 'trace', otel: 'interop', module: () => withOtel('interceptor', FullPathController) },
  { name: 'otel-fast-none', title: 'OTel + library interop, fastest config, never touched', group: 'library', configuration: 'fast', body: 'fixed', echo: true, otel: 'interop', module: () => withOtel('fast', FixedController) },
  { name: 'otel-fast-full', title: 'OTel + library interop, fastest config, full HTTP path', group: 'library', configuration: 'fast', body: 'inbound', echo: true, checks: 'trace', otel: 'interop', module: () => withOtel('fast', FullPathController) },
  { name: 'req-scope-icpt', title: 'the same plus a do-nothing global interceptor', group: 'reference', body: 'inbound', echo: false, module: () => RequestScopeInterceptorModule },
];
