import { SqlCommenter, toCommenter, type SqlCommentOptions } from './comment.js';

/** The part of the context Prisma passes to a sqlcommenter plugin (`@prisma/sqlcommenter`'s `SqlCommenterContext`) used here. */
export interface PrismaSqlCommenterContextLike {
  /** The Prisma query the statement runs. */
  readonly query: {
    /** `'single'`, or `'compacted'` when Prisma merged several queries into one statement. */
    readonly type: string;
  };
}

/** What a Prisma sqlcommenter plugin returns: the comment's pairs (Prisma encodes and formats them). */
export type PrismaSqlCommenterTags = Record<string, string | undefined>;

/**
 * A Prisma sqlcommenter plugin (Prisma 7's `comments` option, `@prisma/sqlcommenter`'s
 * `SqlCommenterPlugin`) adding the active context's pairs: correlation id, `traceparent` with a
 * fresh parent id per statement, declared fields (see {@link SqlCommentOptions}; `prepared` does
 * not apply). Prisma URL-encodes and formats them. Statements Prisma compacts from several queries
 * (`findUnique` batching) may serve several requests at once and get no pairs from this plugin.
 * Typed structurally: this entry point does not import Prisma.
 *
 * @example
 * const prisma = new PrismaClient({ adapter, comments: [prismaSqlCommenter({ fields: ['tenant'] })] });
 */
export function prismaSqlCommenter(options?: SqlCommentOptions | SqlCommenter): (context: PrismaSqlCommenterContextLike) => PrismaSqlCommenterTags {
  const commenter = toCommenter(options);
  return (context) => (context?.query?.type === 'compacted' ? {} : commenter.tags());
}
