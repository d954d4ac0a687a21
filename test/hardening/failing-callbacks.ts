import type { ContextModuleOptions } from '../../src/index.js';
import type { MyContext } from '../fixtures/app-context.js';

/** The reproductions, shared by the hardening suites: options whose callbacks throw. */

/** A validator that throws (URIError) on an inbound id such as `%`. */
export const throwingValidate: ContextModuleOptions<MyContext> = {
  correlationId: { validate: (id: string) => /^[\w-]+$/.test(decodeURIComponent(id)) },
};

/** A generator that always throws. */
export const throwingGenerate: ContextModuleOptions<MyContext> = {
  correlationId: {
    generate: () => {
      throw new Error('id service down');
    },
  },
};
