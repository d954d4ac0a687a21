import type { TrustInbound } from './context-module-options.interface.js';

/** W3C Trace Context behaviour. */
export interface TraceOptions {
  /** Whether inbound `traceparent`/`tracestate` are honoured. Default: the module's `trustInbound`. */
  trustInbound?: TrustInbound;
  /** The sampled flag of traces this service starts itself. Default: `false`. */
  sampleNewTraces?: boolean;
  /** Longest outgoing `tracestate`; longer lists lose whole entries. Default: 512. */
  maxTracestateLength?: number;
}

/**
 * W3C Baggage behaviour. Nothing of your context leaves the service unless you declare it in `fields`.
 */
export interface BaggageOptions {
  /** Whether inbound `baggage` is honoured. Default: the module's `trustInbound`. */
  trustInbound?: TrustInbound;
  /**
   * Context fields that travel as baggage, opt-in per field: a list of field names (the baggage key
   * is the field name) or a map from field name to baggage key. Inbound baggage with that key fills
   * the field when the context leaves it `undefined`; outbound calls carry the field's value
   * (strings, numbers and booleans). Default: none.
   */
  fields?: readonly string[] | Readonly<Record<string, string>>;
  /** Pass inbound baggage members on to outgoing calls. Default: `true`. */
  propagateInbound?: boolean;
  /** Most members sent. Default: 64. */
  maxMembers?: number;
  /** Most bytes sent in the `baggage` header. Default: 8192. */
  maxBytes?: number;
}
