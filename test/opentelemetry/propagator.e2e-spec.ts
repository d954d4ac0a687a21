import 'reflect-metadata';
import { Module, type INestApplication } from '@nestjs/common';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Test } from '@nestjs/testing';
import { context, defaultTextMapGetter, defaultTextMapSetter, INVALID_SPAN_CONTEXT, propagation, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { CompositePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { ContextModule, ContextService, type ContextInit } from '../../src/index.js';
import { ContextOpenTelemetryModule, ContextPropagator, extractedCorrelationId } from '../../src/integrations/opentelemetry/index.js';
import { propagateContext } from '../../src/integrations/fetch/index.js';
import { ContextHost } from '../../src/runtime/context-host.js';
import { parseBaggage } from '../../src/propagation/baggage.js';
import { traceSourceOf } from '../../src/record/trace-source.js';
import { startOtel, type OtelSdk } from './otel-sdk.js';

class PropContext {
  correlationId: string;
  tenant?: string;
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

describe('ContextPropagator', () => {
  const propagator = new ContextPropagator();

  it('extracts baggage into OTel baggage (properties kept) and the correlation id into the context', () => {
    const ctx = propagator.extract(ROOT_CONTEXT, { baggage: 'tenant=acme,user.id=u%201;p=1', 'x-request-id': 'abc-123' }, defaultTextMapGetter);
    const bag = propagation.getBaggage(ctx)!;
    expect(bag.getEntry('tenant')?.value).toBe('acme');
    expect(bag.getEntry('user.id')?.value).toBe('u 1');
    expect(bag.getEntry('user.id')?.metadata?.toString()).toBe('p=1');
    expect(extractedCorrelationId(ctx)).toBe('abc-123');
  });

  it("builds OTel's baggage from a canonical header on first read, the same as parsing it at once; sets none from a header without members", () => {
    for (const header of ['tenant=acme', 'userId=alice,isProduction=false', 'a=1,b=2,c=%2C', 'k=v;p=1', 'a = 1 , b=2', 'x=1,x=2']) {
      const bag = propagation.getBaggage(propagator.extract(ROOT_CONTEXT, { baggage: header }, defaultTextMapGetter))!;
      const parsed = parseBaggage(header);
      const entries = bag.getAllEntries().map(([key, entry]) => [key, entry.value, entry.metadata?.toString()]);
      // A repeated key: the last value, as OTel's own baggage keeps it.
      const expected = new Map(parsed.map((m) => [m.key, [m.key, m.value, m.properties]]));
      expect({ header, entries }).toEqual({ header, entries: [...expected.values()] });
      expect(bag.getEntry(parsed[0]!.key)?.value).toBe(expected.get(parsed[0]!.key)![1]);
      // Changes give new baggage, as OTel's own does; the extracted one stays as it was.
      expect(bag.setEntry('added', { value: 'yes' }).getEntry('added')?.value).toBe('yes');
      expect(bag.removeEntry(parsed[0]!.key).getEntry(parsed[0]!.key)).toBeUndefined();
      expect(bag.removeEntries(...parsed.map((m) => m.key)).getAllEntries()).toEqual([]);
      expect(bag.clear().getAllEntries()).toEqual([]);
      expect(bag.getAllEntries()).toHaveLength(expected.size);
    }
    for (const header of ['', '=', ',;', 'no value', '=x']) {
      expect(propagation.getBaggage(propagator.extract(ROOT_CONTEXT, { baggage: header }, defaultTextMapGetter))).toBeUndefined();
    }
  });

  it('extracts nothing from an empty or unreadable carrier, and never throws', () => {
    expect(propagator.extract(ROOT_CONTEXT, {}, defaultTextMapGetter)).toBe(ROOT_CONTEXT);
    const throwing = { get: () => { throw new Error('boom'); }, keys: () => [] };
    expect(propagator.extract(ROOT_CONTEXT, {}, throwing)).toBe(ROOT_CONTEXT);
    expect(extractedCorrelationId(ROOT_CONTEXT)).toBeUndefined();
  });

  it("outside any context: writes OTel's baggage only (as W3CBaggagePropagator would)", () => {
    const ctx = propagation.setBaggage(ROOT_CONTEXT, propagation.createBaggage({ a: { value: 'x y' } }));
    const carrier: Record<string, string> = {};
    propagator.inject(ctx, carrier, defaultTextMapSetter);
    expect(carrier).toEqual({ baggage: 'a=x%20y' });
  });

  it('reports its fields and rejects unusable header names with a fix', () => {
    expect(new ContextPropagator({ correlationIdHeaders: ['X-Correlation-Id'] }).fields()).toEqual(['baggage', 'x-correlation-id']);
    expect(() => new ContextPropagator({ correlationIdHeaders: ['bad header'] })).toThrow(/correlationIdHeaders must be an array of header names.*x-request-id/);
  });
});

describe('ContextOpenTelemetryModule.forRoot() options', () => {
  it.each([
    [{ traceSource: 'otel' }, /traceSource must be 'auto' or 'context', got otel. Leave it out for 'auto'/],
    [{ httpClients: 'both' }, /httpClients must be 'instrumentation' or 'inject'/],
    [{ logTraceIds: 'no' }, /logTraceIds must be a boolean/],
    [{ correlationIdAttribute: '' }, /correlationIdAttribute must be a non-empty string/],
  ])('%j is refused with the fix in the message', (options, message) => {
    expect(() => ContextOpenTelemetryModule.forRoot(options as never)).toThrow(message);
  });
});

describe('ContextOpenTelemetryModule with the OTel SDK: the manual API, httpClients: inject, app teardown', () => {
  let otel: OtelSdk;
  let app: INestApplication;
  let service: ContextService<PropContext>;

  beforeAll(async () => {
    otel = startOtel();
    otel.undici.disable(); // an SDK without fetch instrumentation: the integration injects OTel's context itself
    @Module({
      imports: [ContextModule.forRoot(PropContext, { baggage: { fields: ['tenant'] } }), ContextOpenTelemetryModule.forRoot({ httpClients: 'inject' })],
    })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    service = app.get(ContextService);
  });
  afterAll(async () => {
    await app?.close();
    await otel.shutdown();
  });

  it("contextService.run() inside an active span adopts that span; outside one the library's own trace", () => {
    const tracer = trace.getTracer('test');
    const { adopted, spanId, traceId } = tracer.startActiveSpan('job', (span) => {
      const result = service.run(() => service.trace!);
      span.end();
      return { adopted: result, spanId: span.spanContext().spanId, traceId: span.spanContext().traceId };
    });
    expect(adopted.traceId).toBe(traceId);
    expect(adopted.spanId).toBe(spanId);
    expect(adopted.sampled).toBe(true);
    expect(adopted.remote).toBe(false);
    const own = service.run(() => service.trace!);
    expect(own.traceId).not.toBe(traceId);
    expect(otel.spans().map((s) => s.spanContext().spanId)).not.toContain(own.spanId);
  });

  it("a span with an invalid span context active (a non-recording placeholder): the library's own trace, and inject() writes the library's headers", () => {
    const placeholder = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
    const { own, headers } = context.with(trace.setSpan(context.active(), placeholder), () =>
      service.run(() => ({ own: service.trace!, headers: service.inject<Record<string, string>>({}) }), { correlationId: 'invalid-span-1' }),
    );
    expect(own.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(own.traceId).not.toBe(INVALID_SPAN_CONTEXT.traceId);
    expect(own.spanId).not.toBe(INVALID_SPAN_CONTEXT.spanId);
    expect(headers.traceparent).toMatch(new RegExp(`^00-${own.traceId}-[0-9a-f]{16}-0[0-3]$`)); // each outgoing call its own parent id
    expect(headers['x-request-id']).toBe('invalid-span-1');
  });

  it("a span of another tracer: adopted with the parent it exposes, when that parent is in the span's trace and its span id is valid", () => {
    const own = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: TraceFlags.SAMPLED };
    /** The trace the record adopts with `fields` set on the active span (as another SDK's span would expose them). */
    const adopted = (fields: object) => {
      const span = Object.assign(trace.wrapSpanContext(own), fields);
      return context.with(trace.setSpan(context.active(), span), () => service.run(() => service.trace!));
    };
    const sameTrace = adopted({ parentSpanContext: { traceId: own.traceId, spanId: 'c'.repeat(16), traceFlags: 1, isRemote: true } });
    expect([sameTrace.traceId, sameTrace.spanId, sameTrace.parentId, sameTrace.remote]).toEqual([own.traceId, own.spanId, 'c'.repeat(16), true]);
    // A parent in another trace, or with an unusable span id, is not reported as this span's parent.
    for (const parentSpanContext of [
      { traceId: 'd'.repeat(32), spanId: 'c'.repeat(16), traceFlags: 1, isRemote: true },
      { traceId: own.traceId, spanId: '0'.repeat(16), traceFlags: 1, isRemote: true },
      { traceId: own.traceId, spanId: 'not-a-span-id-16', traceFlags: 1, isRemote: true },
    ]) {
      const t = adopted({ parentSpanContext });
      expect({ parentSpanContext, got: [t.traceId, t.spanId, t.parentId, t.remote] }).toEqual({ parentSpanContext, got: [own.traceId, own.spanId, undefined, false] });
    }
    // OTel 1.x's spans expose the parent's span id alone.
    expect(adopted({ parentSpanId: 'e'.repeat(16) }).parentId).toBe('e'.repeat(16));
    for (const parentSpanId of ['e'.repeat(15), '0'.repeat(16), 'g'.repeat(16)]) expect({ parentSpanId, got: adopted({ parentSpanId }).parentId }).toEqual({ parentSpanId, got: undefined });
  });

  it("inject() inside a span writes OTel's traceparent, the merged baggage and the id, each once", () => {
    const tracer = trace.getTracer('test');
    const { headers, spanId, traceId, correlationId } = tracer.startActiveSpan('work', (span) => {
      const ctx = propagation.setBaggage(context.active(), propagation.createBaggage({ region: { value: 'eu' }, tenant: { value: 'stale' } }));
      const out = context.with(ctx, () =>
        service.run(() => {
          service.get().tenant = 'acme';
          return { headers: service.inject({}), correlationId: service.correlationId };
        }),
      );
      span.end();
      return { ...out, spanId: span.spanContext().spanId, traceId: span.spanContext().traceId };
    });
    expect(headers).toEqual({
      traceparent: `00-${traceId}-${spanId}-01`,
      baggage: 'tenant=acme,region=eu',
      'x-request-id': correlationId,
    });
  });

  it("httpClients: 'inject': the fetch integration writes OTel's context itself, each header once", async () => {
    const seen: string[][] = [];
    const server = createServer((req, res) => {
      seen.push(req.rawHeaders);
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const send = propagateContext(fetch);
    try {
      const { spanId, traceId, correlationId } = await trace.getTracer('test').startActiveSpan('call', async (span) => {
        const id = await service.run(async () => {
          service.get().tenant = 'acme';
          await (await send(url)).text();
          return service.correlationId;
        });
        span.end();
        return { correlationId: id, spanId: span.spanContext().spanId, traceId: span.spanContext().traceId };
      });
      const raw = seen[0] as string[];
      const values = (name: string) => raw.filter((_v, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === name);
      expect(values('traceparent')).toEqual([`00-${traceId}-${spanId}-01`]);
      expect(values('baggage')).toEqual(['tenant=acme']);
      expect(values('x-request-id')).toEqual([correlationId]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('the trace source belongs to the app and is gone once the app closes', async () => {
    const host = app.get(ContextHost);
    expect(traceSourceOf(host.options)).toBeDefined();
    await app.close();
    expect(traceSourceOf(host.options)).toBeUndefined();
  });
});

describe('ContextPropagator after W3CTraceContextPropagator: Level 2 trace context on a forwarded call', () => {
  const composite = new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new ContextPropagator()] });
  const T = '12345678901234567890123456789012';
  const P = '1234567890123456';

  beforeAll(() => propagation.setGlobalPropagator(composite));
  afterAll(() => propagation.disable());

  /** Extracts `headers`, makes a child as OTel's SDK does (same trace and tracestate, sampler's flags only; `spanId` its id) and injects it. */
  function forward(headers: Record<string, string | string[]>, spanId = 'abcdef0123456789'): Record<string, string> {
    const extracted = composite.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    const parent = trace.getSpanContext(extracted)!;
    const child = trace.setSpanContext(extracted, { traceId: parent.traceId, spanId, traceFlags: TraceFlags.SAMPLED, traceState: parent.traceState });
    const out: Record<string, string> = {};
    composite.inject(child, out, defaultTextMapSetter);
    return out;
  }

  it('keeps tracestate keys of the Level 2 grammar that OTel alone drops', () => {
    for (const tracestate of ['foo@=1,bar=2', 'foo@@bar=1,bar=2', `${'t'.repeat(242)}@v=1`, `foo=1,${'z'.repeat(256)}=1`]) {
      expect({ tracestate, sent: forward({ traceparent: `00-${T}-${P}-01`, tracestate }).tracestate }).toEqual({ tracestate, sent: tracestate });
    }
  });

  it('drops the whole tracestate when a member breaks the grammar or there are more than 32 (OTel alone keeps the rest)', () => {
    const members33 = Array.from({ length: 33 }, (_, i) => `bar${String(i + 1).padStart(2, '0')}=${i}`).join(',');
    for (const tracestate of ['foo=bar=baz', 'foo=,bar=3', '@foo=1,bar=2', `foo=1,${'z'.repeat(257)}=1`, members33]) {
      const sent = forward({ traceparent: `00-${T}-${P}-01`, tracestate });
      expect({ tracestate, sent: sent.tracestate, traceparent: sent.traceparent }).toEqual({ tracestate, sent: undefined, traceparent: `00-${T}-abcdef0123456789-01` });
    }
  });

  it("without a tracestate (most requests) the extracted context is OTel's own, untouched", () => {
    const w3c = new W3CTraceContextPropagator().extract(ROOT_CONTEXT, { traceparent: `00-${T}-${P}-01` }, defaultTextMapGetter);
    expect(new ContextPropagator().extract(w3c, { traceparent: `00-${T}-${P}-01` }, defaultTextMapGetter)).toBe(w3c);
  });

  it("applies Level 2 to what OTel read from this traceparent (after its one optional leading space), and leaves another propagator's remote span context alone", () => {
    expect(forward({ traceparent: ` 00-${T}-${P}-01`, tracestate: 'foo@=1,bar=2' }).tracestate).toBe('foo@=1,bar=2');
    // A carrier that gives each field as a list (one value): the same.
    expect(forward({ traceparent: [`00-${T}-${P}-01`], tracestate: ['foo@=1,bar=2'] }).tracestate).toBe('foo@=1,bar=2');
    // A remote span context of other ids (as a B3 or Jaeger propagator extracts it) beside a traceparent of its own.
    const other = trace.setSpanContext(ROOT_CONTEXT, { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 3, isRemote: true });
    const out = new ContextPropagator().extract(other, { traceparent: `00-${T}-${P}-03`, tracestate: 'foo@=1' }, defaultTextMapGetter);
    expect(out).toBe(other);
  });

  it('sets the random flag again on the spans of a trace that arrived with it, and only then', () => {
    expect(forward({ traceparent: `00-${T}-${P}-02` }).traceparent).toBe(`00-${T}-abcdef0123456789-03`);
    expect(forward({ traceparent: `00-${T}-${P}-00` }).traceparent).toBe(`00-${T}-abcdef0123456789-01`);
  });

  it("a child span id in upper case (another tracer's, which OTel takes): OTel's traceparent as it wrote it, and the baggage still goes out", () => {
    const out = forward({ traceparent: `00-${T}-${P}-02`, baggage: 'k=v' }, 'ABCDEF0123456789');
    expect(out.traceparent).toBe(`00-${T}-ABCDEF0123456789-01`);
    expect(out.baggage).toBe('k=v');
  });
});
