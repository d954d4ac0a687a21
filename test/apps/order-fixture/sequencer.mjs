/**
 * Runs the order fixture's test files by path, forward or in reverse (`ORDER_FIXTURE_ORDER=reverse`),
 * instead of Jest's own order (by past duration and failures, which changes from run to run).
 */
import sequencer from '@jest/test-sequencer';

const Base = sequencer.default ?? sequencer;

export default class OrderSequencer extends Base {
  sort(tests) {
    const sorted = [...tests].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return process.env.ORDER_FIXTURE_ORDER === 'reverse' ? sorted.reverse() : sorted;
  }
}
