import { appendFileSync } from 'node:fs';
import { basename } from 'node:path';
import { ContextService, currentContext } from 'nestjs-context';

/** What one piece of user code saw of the context: whether one was active, its class, its id's kind. */
export interface Look {
  active: boolean;
  cls?: string;
  id?: string;
  /** The name of what reading `currentContext` threw, when it threw. */
  error?: string;
}

/**
 * What is active here, read through `currentContext` and the app's `ContextService` (which must
 * agree). Random ids are reported as `'fresh'`, given ones as they are, so two runs compare equal.
 */
export function look(service: ContextService<object>): Look {
  try {
    const context = currentContext as unknown as { correlationId: string };
    const cls = (context as object).constructor.name;
    if (service.correlationId !== context.correlationId) throw new Error('currentContext and ContextService disagree');
    return { active: service.active, cls, id: /^[0-9a-f]{8}-[0-9a-f]{4}-7/.test(context.correlationId) ? 'fresh' : context.correlationId };
  } catch (error) {
    return { active: service.active, error: (error as Error).name };
  }
}

/** Appends what a test observed to the run's log (`ORDER_FIXTURE_LOG`), for the two runs to be compared. */
export function record(file: string, test: string, observed: unknown): void {
  const log = process.env.ORDER_FIXTURE_LOG;
  if (log === undefined) return;
  appendFileSync(log, JSON.stringify({ file: basename(file), test, observed }) + '\n');
}
