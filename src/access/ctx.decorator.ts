import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { ContextNotActiveError } from '../errors.js';
import { recordOfRequest, storage, type ContextRecord } from '../record/context-record.js';

/**
 * The active record; where the async chain was lost, the HTTP request's own: for HTTP handlers the
 * first argument, for GraphQL resolvers (`@nestjs/graphql`) the `req` of their context object (the
 * third argument).
 */
function recordOf(ctx: ExecutionContext): ContextRecord | undefined {
  const active = storage.getStore();
  if (active !== undefined) return active;
  const type = ctx.getType<string>();
  if (type === 'http') return recordOfRequest(ctx.getArgByIndex<unknown>(0));
  if (type === 'graphql') return recordOfRequest(requestOf(ctx.getArgByIndex<unknown>(2)));
  return undefined;
}

/** The `req` of a GraphQL context object, or `undefined` (never throws). */
function requestOf(gqlContext: unknown): unknown {
  if (gqlContext === null || typeof gqlContext !== 'object') return undefined;
  try {
    return (gqlContext as { req?: unknown }).req;
  } catch {
    return undefined;
  }
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
