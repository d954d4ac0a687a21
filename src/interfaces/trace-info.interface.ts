/** One member of W3C baggage, as received or as sent: the value is decoded text. */
export interface BaggageMember {
  /** The member's key (a token). */
  readonly key: string;
  /** The decoded value. */
  readonly value: string;
  /** The property set after the first `;`, raw as received (trimmed, not decoded), e.g. `k1=v1;k2`; absent when the member has none. */
  readonly properties?: string;
}

/** The W3C Trace Context of the current request, read-only. */
export interface TraceInfo {
  /** 32 lowercase hex digits; the inbound trace id, or a fresh one when none valid came in. */
  readonly traceId: string;
  /** This hop's own span id (16 hex digits), new for every request handled. */
  readonly spanId: string;
  /** The caller's span id from the inbound `traceparent`, or `undefined` when this hop started the trace. */
  readonly parentId: string | undefined;
  /** Trace flags as passed on: bit 0 sampled, bit 1 random (Level 2). */
  readonly flags: number;
  /** Whether the sampled flag is set. */
  readonly sampled: boolean;
  /** The inbound `tracestate` members, in order (`[]` when none or when it was dropped as invalid). */
  readonly tracestate: readonly (readonly [key: string, value: string])[];
  /** Whether the trace was continued from a valid inbound `traceparent`. */
  readonly remote: boolean;
}
