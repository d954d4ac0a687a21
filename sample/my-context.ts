import type { ContextInit } from 'nestjs-context';

/**
 * The seed's context class: a correlation id that is new for every request (or the caller's,
 * when it sends a valid `x-request-id`), plus whatever the app wants to carry.
 */
export class MyContext {
  readonly correlationId: string;
  userId?: string;

  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

/** The context fields that travel to other services as W3C baggage (opt-in; nothing else leaves). */
export const BAGGAGE_FIELDS = { userId: 'user.id' } as const;

// Types `currentContext` everywhere in this app.
declare module 'nestjs-context' {
  interface ContextRegistry {
    context: MyContext;
  }
}
