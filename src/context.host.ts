import type { IncomingMessage, ServerResponse } from 'node:http';
import { Inject, Injectable, type ExecutionContext, type Type } from '@nestjs/common';
import { CONTEXT_CLASS, CONTEXT_MODULE_OPTIONS, RECORD_KEY } from './context.constants.js';
import { resolveOptions, type ResolvedContextOptions } from './context.options.js';
import { ContextRecord, storage } from './context.storage.js';
import type { ContextSource } from './interfaces/context-init.interface.js';
import type { ContextModuleOptions } from './interfaces/context-module-options.interface.js';
import { readCorrelationId } from './propagation/correlation-id.js';

/** A request object as the adapters hand it out: Node's own, or Fastify's wrapper with `.raw`. */
type AnyRequest = IncomingMessage & { [RECORD_KEY]?: ContextRecord; raw?: IncomingMessage & { [RECORD_KEY]?: ContextRecord } };
type AnyResponse = { raw?: ServerResponse } & Partial<Pick<ServerResponse, 'setHeader' | 'headersSent'>>;

/** Options of {@link ContextHost.open}. @internal */
export interface OpenOptions<T> {
  correlationId?: string;
  context?: T;
  source?: ContextSource;
}

/**
 * The per-app engine behind every access path: it turns requests into records, reads the inbound
 * correlation id, echoes it, and opens contexts for `run()`. A singleton; nothing in it is request-scoped.
 * @internal
 */
@Injectable()
export class ContextHost<T extends object = object> {
  readonly options: ResolvedContextOptions<T>;

  constructor(
    @Inject(CONTEXT_CLASS) readonly contextClass: Type<T>,
    @Inject(CONTEXT_MODULE_OPTIONS) options: ContextModuleOptions<T>,
  ) {
    this.options = resolveOptions(contextClass, options);
  }

  /**
   * Connect-style entry mounted before everything else on the HTTP adapter: creates the record,
   * echoes the id and runs the rest of the pipeline inside the context.
   */
  readonly entry = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void => {
    storage.run(this.forHttp(req as AnyRequest, res), next);
  };

  /** Returns the request's record, creating it on first call, and echoes the id once a response is at hand. */
  forHttp(req: AnyRequest, res?: AnyResponse): ContextRecord<T> {
    const raw = req.raw ?? req;
    let record = raw[RECORD_KEY] as ContextRecord<T> | undefined;
    if (record === undefined) {
      const o = this.options;
      let id: string | undefined;
      if (o.trustCorrelationId === undefined || (o.trustCorrelationId !== false && o.trustCorrelationId(raw))) {
        id = readCorrelationId(raw.headers, o.requestHeaders, o.validate);
      }
      record = new ContextRecord<T>(id ?? o.generate(), 'http', o.factory, raw);
      raw[RECORD_KEY] = record;
    }
    if (res !== undefined && !record.echoed) this.echo(record, res);
    return record;
  }

  private echo(record: ContextRecord<T>, res: AnyResponse): void {
    record.echoed = true;
    const name = this.options.responseHeader;
    const out = res.raw ?? res;
    if (name !== undefined && out.headersSent === false) out.setHeader?.(name, record.correlationId);
  }

  /**
   * The record for a Nest execution context: the request's for HTTP, otherwise the active one,
   * otherwise a fresh one for this handler.
   */
  forExecution(ctx: ExecutionContext): ContextRecord<T> {
    if (ctx.getType() === 'http') {
      const http = ctx.switchToHttp();
      return this.forHttp(http.getRequest<AnyRequest>(), http.getResponse<AnyResponse>());
    }
    return (storage.getStore() as ContextRecord<T> | undefined) ?? this.create({ source: ctx.getType() });
  }

  /** The record for whatever Nest injects as `REQUEST` into a request-scoped provider. */
  forInjectedRequest(request: unknown): ContextRecord<T> {
    if (request !== null && typeof request === 'object' && 'headers' in request) {
      return this.forHttp(request as AnyRequest, (request as { res?: AnyResponse }).res);
    }
    return (storage.getStore() as ContextRecord<T> | undefined) ?? this.create({ source: 'rpc' });
  }

  /** Creates a record outside HTTP (manual runs, jobs, messages). */
  create(options: OpenOptions<T> = {}): ContextRecord<T> {
    const id = options.correlationId ?? this.options.generate();
    const given = options.context === undefined ? undefined : this.options.fill(options.context, id);
    return new ContextRecord<T>(id, options.source ?? 'manual', this.options.factory, undefined, given);
  }
}
