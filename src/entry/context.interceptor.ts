import { Injectable, InternalServerErrorException, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { ContextHost } from '../runtime/context-host.js';
import { runInRecord, storage } from '../record/context-record.js';
import { markInternal } from '../runtime/internal.js';

/**
 * The global interceptor that enters the context around every handler. On HTTP the context is
 * usually entered already (before the pipeline) and this costs one lookup; where it is not (the
 * `enterEarly` option off, non-HTTP handlers, or a framework that lost it), the handler's Observable
 * is subscribed inside the context, and unsubscribing cancels the handler.
 *
 * A request whose entry failed (an option callback threw; already logged with its stack) is answered
 * here with an `InternalServerErrorException` whose `cause` is the failure, through Nest's exception
 * layer and your filters; being an HTTP exception, Nest does not log it a second time.
 * Mounted by `ContextModule` (option `interceptor`). @internal
 */
@Injectable()
export class ContextInterceptor implements NestInterceptor {
  /** Built by Nest. @internal */
  constructor(private readonly host: ContextHost) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const record = this.host.forExecution(ctx);
    if (record.failure !== undefined) throw new InternalServerErrorException(undefined, { cause: record.failure });
    if (storage.getStore() === record) return next.handle();
    return runInRecord(record, () => next.handle());
  }
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextInterceptor);
