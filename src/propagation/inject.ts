import type { ContextRecord } from '../record/context-record.js';
import type { BaggageMember } from '../interfaces/trace-info.interface.js';
import { formatBaggage, isCanonicalBaggage } from './baggage.js';
import { randomSpanId } from './ids.js';
import { KNOWN_FLAGS } from './traceparent.js';
import { formatTracestate } from './tracestate.js';
import type { CarrierSetter } from './carrier.js';
import { traceSourceOf, type OutboundKind, type TraceSource } from '../record/trace-source.js';
import { Logger } from '@nestjs/common';

/**
 * What one record sends on every outgoing call, worked out on its first call and reused: the
 * `traceparent` around the per-call parent id, the `tracestate`, the baggage part that comes from
 * inbound data. Only the parent id (and the declared fields' current values) change per call.
 * @internal
 */
export interface OutboundParts {
  /** `00-<trace-id>-` */
  readonly prefix: string;
  /** `-<flags>` */
  readonly suffix: string;
  /** The outgoing `tracestate`, or `''`. */
  readonly tracestate: string;
  /** Inbound members with a declared key (what a pass-through service forwards for the declared fields). */
  readonly declaredInbound: readonly BaggageMember[];
  /** Inbound members forwarded because `propagateInbound` is on (undeclared keys only). */
  readonly otherInbound: readonly BaggageMember[];
  /** The baggage header while the user's object does not exist: inbound members only. */
  readonly inboundBaggage: string;
}

const NONE: readonly BaggageMember[] = Object.freeze([]);

/** `-<flags>` of an outgoing `traceparent`, by the known flag bits (no number formatting per request). */
const FLAG_SUFFIXES = ['-00', '-01', '-02', '-03'] as const;

/**
 * What every outgoing call of `record` carries around its fresh parent id (see {@link OutboundParts}),
 * worked out on the first call. Callers that write the trace fields themselves (the SQL comment)
 * read it where the record has no trace source, as {@link injectRecord} does. @internal
 */
export function partsOf(record: ContextRecord): OutboundParts {
  const cached = record.outbound;
  if (cached !== undefined) return cached;
  const trace = record.trace;
  const prefix = `00-${trace.traceId}-`;
  const suffix = FLAG_SUFFIXES[trace.flags & KNOWN_FLAGS] as string;
  const tracestate = trace.tracestate.length === 0 ? '' : formatTracestate(trace.tracestate, record.config.trace.maxTracestateLength);
  const options = record.config.baggage;
  let parts: OutboundParts;
  if (options.fields.length === 0 && !options.propagateInbound) {
    parts = { prefix, suffix, tracestate, declaredInbound: NONE, otherInbound: NONE, inboundBaggage: '' };
  } else {
    // Nothing declared and everything passed on: a header in canonical form goes out as it came,
    // unparsed (parsing and formatting it again would give the same string).
    const raw = options.fields.length === 0 ? record.rawBaggage : undefined;
    if (raw !== undefined && isCanonicalBaggage(raw, options.limits)) {
      parts = { prefix, suffix, tracestate, declaredInbound: NONE, otherInbound: NONE, inboundBaggage: raw };
    } else {
      const baggage = inboundBaggageParts(record);
      parts = { prefix, suffix, tracestate, declaredInbound: baggage.declaredInbound, otherInbound: baggage.otherInbound, inboundBaggage: baggage.inboundBaggage };
    }
  }
  record.outbound = parts;
  return parts;
}

type InboundBaggageParts = Pick<OutboundParts, 'declaredInbound' | 'otherInbound' | 'inboundBaggage'>;

const NO_INBOUND: InboundBaggageParts = Object.freeze({ declaredInbound: NONE, otherInbound: NONE, inboundBaggage: '' });

/** What the parsed inbound baggage contributes to every outgoing call: the declared members, the others passed on, and both as a header. */
function inboundBaggageParts(record: ContextRecord): InboundBaggageParts {
  const options = record.config.baggage;
  const inbound = record.baggage;
  if (inbound.length === 0) return NO_INBOUND;
  const keys = new Set(options.fields.map(([, key]) => key));
  const declaredInbound = keys.size === 0 ? NONE : inbound.filter((member) => keys.has(member.key));
  const otherInbound = options.propagateInbound ? inbound.filter((member) => !keys.has(member.key)) : NONE;
  const members = declaredInbound.length === 0 ? otherInbound : otherInbound.length === 0 ? declaredInbound : declaredInbound.concat(otherInbound);
  return { declaredInbound, otherInbound, inboundBaggage: members.length === 0 ? '' : formatBaggage(members, options.limits) };
}

/**
 * The outgoing `baggage` of one call: the declared fields — from the user's object once it exists
 * (its current values), else as they came in (a pass-through service forwards them whatever
 * `propagateInbound` says) — then, with `propagateInbound`, the other inbound members.
 */
function baggageOf(record: ContextRecord, parts: OutboundParts): string {
  const fields = record.config.baggage.fields;
  const context = fields.length === 0 ? undefined : record.contextIfCreated();
  if (context === undefined) return parts.inboundBaggage;
  const declared: BaggageMember[] = [];
  const source = context as Record<string, unknown>;
  for (const [field, key] of fields) {
    const value = source[field];
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') declared.push({ key, value: String(value) });
  }
  if (declared.length === 0 && parts.otherInbound.length === 0) return '';
  return formatBaggage(parts.otherInbound.length === 0 ? declared : declared.concat(parts.otherInbound), record.config.baggage.limits);
}

/**
 * Writes what an outgoing call made now from `record` carries through `setter`: `traceparent`
 * (same trace id, a fresh parent id per call), `tracestate`, `baggage` and the correlation id
 * header. Every client and transport of the library writes through here; an app's trace source
 * (`record/trace-source.ts`) may write instead (`kind`: which kind of client asks). @internal
 */
export function injectRecord<C>(record: ContextRecord, carrier: C, setter: CarrierSetter<C>, kind: OutboundKind = 'carrier'): void {
  const source = traceSourceOf(record.config);
  if (source !== undefined && sourceInjected(source, record, carrier, setter, kind)) return;
  const parts = partsOf(record);
  setter.set(carrier, 'traceparent', parts.prefix + randomSpanId() + parts.suffix);
  if (parts.tracestate !== '') setter.set(carrier, 'tracestate', parts.tracestate);
  const baggage = baggageOf(record, parts);
  if (baggage !== '') setter.set(carrier, 'baggage', baggage);
  const header = record.config.outboundHeader;
  if (header !== undefined) setter.set(carrier, header, record.correlationId);
}

let sourceFailureReported = false;

/**
 * Lets an app's trace source write the call; one that throws (a tracer's propagator can) writes
 * nothing, and the library's own headers go out instead — reported once per process.
 */
function sourceInjected<C>(source: TraceSource, record: ContextRecord, carrier: C, setter: CarrierSetter<C>, kind: OutboundKind): boolean {
  try {
    return source.inject(record, carrier, setter, kind) === true;
  } catch (error) {
    if (!sourceFailureReported) {
      sourceFailureReported = true;
      try {
        const reason = error instanceof Error ? error.message : String(error);
        new Logger('ContextModule').error(
          `The tracer's propagation (the app's trace source, e.g. nestjs-context/opentelemetry) threw while writing an outgoing call: ${reason}. ` +
            "That call carries the library's own trace headers instead. Fix the propagator your tracer is configured with; this is logged once.",
          error instanceof Error ? error.stack : undefined,
        );
      } catch {
        // A logger that throws must not fail the call either.
      }
    }
    return false;
  }
}

/** Writes into a fresh plain object (no checks: it starts empty). */
const objectSetter: CarrierSetter<Record<string, string>> = {
  set(carrier, name, value) {
    carrier[name] = value;
  },
};

/**
 * The outgoing headers of one call made now from `record`, as a fresh object (see
 * {@link injectRecord}; the same fields in the same order). Without a trace source the object is
 * built directly, with named stores instead of a setter's keyed ones. @internal
 */
export function outboundHeaders(record: ContextRecord): Record<string, string> {
  const config = record.config;
  if (traceSourceOf(config) !== undefined) {
    const headers: Record<string, string> = {};
    injectRecord(record, headers, objectSetter);
    return headers;
  }
  const parts = partsOf(record);
  const headers: Record<string, string> = { traceparent: parts.prefix + randomSpanId() + parts.suffix };
  if (parts.tracestate !== '') headers.tracestate = parts.tracestate;
  const baggage = baggageOf(record, parts);
  if (baggage !== '') headers.baggage = baggage;
  const header = config.outboundHeader;
  if (header !== undefined) headers[header] = record.correlationId;
  return headers;
}
