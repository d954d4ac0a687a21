import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { ContextNotActiveError } from '../errors.js';
import { recordOfRequest, storage, type ContextRecord } from '../record/context-record.js';

/** The active record; for HTTP, where the async chain was lost, the request's own. */
function recordOf(ctx: ExecutionContext): ContextRecord | undefined {
  const active = storage.getStore();
  if (active !== undefined || ctx.getType() !== 'http') return active;
  return recordOfRequest(ctx.getArgByIndex<unknown>(0));
}

/**
 * Injects the context of the current request into a handler parameter, or one of its fields.
 *
 * @example
 * \@Get() find(@Ctx() ctx: MyContext, @Ctx('userId') userId: string) {}
 *
 * `@nestjs/microservices` exports a `Ctx` decorator of its own (the transport context); in files
 * that need both, rename one on import: `import { Ctx as ContextParam }` from this package.
 */
export const Ctx: (field?: string) => ParameterDecorator = createParamDecorator(
  (field: string | undefined, ctx: ExecutionContext): unknown => {
    const record = recordOf(ctx);
    if (record === undefined) throw ContextNotActiveError.create('@Ctx()');
    const context = record.context;
    return field === undefined ? context : (context as Record<string, unknown>)[field];
  },
);
