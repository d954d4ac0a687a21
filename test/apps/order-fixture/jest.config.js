/**
 * Jest config of the order fixture (test/apps/order-fixture/): the project's own config, limited to
 * this folder (which the project's config ignores), run in one worker with a sequencer that takes the
 * files forward or in reverse (`ORDER_FIXTURE_ORDER`). test/apps/test-order.e2e-spec.ts runs it.
 */
import { fileURLToPath } from 'node:url';
import base from '../../../jest.config.js';

export default {
  ...base,
  rootDir: fileURLToPath(new URL('../../..', import.meta.url)),
  roots: ['<rootDir>/test/apps/order-fixture'],
  testPathIgnorePatterns: ['/node_modules/'],
  testSequencer: '<rootDir>/test/apps/order-fixture/sequencer.mjs',
  maxWorkers: 1,
};
