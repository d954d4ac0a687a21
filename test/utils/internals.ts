import { storage } from '../../src/record/context-record.js';

/**
 * The active context object itself, for identity checks in tests (`activeContext() === ctx`).
 * The public API hands it out through `ContextService.get()`; tests without DI use this.
 */
export function activeContext(): object {
  const record = storage.getStore();
  if (record === undefined) throw new Error('activeContext(): no context is active');
  return record.context;
}
