import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { RECORD_KEY } from './context.constants.js';
import { ContextNotActiveError } from './context.errors.js';
import { storage, type ContextRecord } from './context.storage.js';

type WithRecord = { [RECORD_KEY]?: ContextRecord; raw?: { [RECORD_KEY]?: ContextRecord } };

/** The active record; for HTTP, where the async chain was lost, the request's own. */
function recordOf(ctx: ExecutionContext): ContextRecord | undefined {
  const active = storage.getStore();
  if (active !== undefined || ctx.getType() !== 'http') return active;
  const req = ctx.getArgByIndex<WithRecord | undefined>(0);
  return req?.[RECORD_KEY] ?? req?.raw?.[RECORD_KEY];
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
