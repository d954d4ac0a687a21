/**
 * W3C Trace Context (Level 2) and W3C Baggage header logic: pure functions, no dependencies
 * besides `node:crypto` / `node:buffer`, never throwing on received input.
 */
export { randomTraceId, randomSpanId, isValidTraceId, isValidSpanId } from './ids.js';
export {
  type TraceParent,
  FLAG_SAMPLED,
  FLAG_RANDOM,
  parseTraceparent,
  formatTraceparent,
} from './traceparent.js';
export {
  type TraceStateEntries,
  parseTracestate,
  formatTracestate,
  updateTracestate,
  isValidTracestateKey,
  isValidTracestateValue,
} from './tracestate.js';
export {
  type BaggageEntry,
  type BaggageLimits,
  type BaggageProperty,
  parseBaggage,
  formatBaggage,
  parseBaggageProperties,
} from './baggage.js';
