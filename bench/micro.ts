// Micro-benchmark of the library's hot pure functions (ns/op), plus the per-request components of
// the HTTP path for diagnosis. Run by bench/run.mjs on each Node (pinned to the server core); prints
// one `MICRO_JSON {...}` line. Functions that the current build does not have are listed as absent,
// so the traceparent/baggage rows appear as soon as src/propagation/{traceparent,baggage}.ts exist.
import 'reflect-metadata';
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';

type Fn = (...args: never[]) => unknown;
type Row = { group: string; name: string; ns: number; min: number };

const results: Row[] = [];
const absent: string[] = [];
const sink: unknown[] = new Array(16);

const BATCHES = 15;
const BATCH_MS = 20;
const WARMUP_MS = 250;

/** Milliseconds from a monotonic clock. */
function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Nanoseconds taken by `iterations` calls of `fn` (results kept in a sink so they are not optimised away). */
function timeBatch(fn: () => unknown, iterations: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink[i & 15] = fn();
  return Number(process.hrtime.bigint() - start);
}

/** Warms `fn` up, calibrates a batch to about BATCH_MS and records the median and fastest ns/op over BATCHES batches. */
function bench(group: string, name: string, fn: () => unknown): void {
  let iterations = 256;
  const warmEnd = now() + WARMUP_MS;
  while (now() < warmEnd) timeBatch(fn, iterations);
  // Calibrate a batch to about BATCH_MS.
  for (;;) {
    const ns = timeBatch(fn, iterations);
    if (ns >= BATCH_MS * 1e6 * 0.5 || iterations > 2 ** 28) {
      iterations = Math.max(1, Math.round((iterations * BATCH_MS * 1e6) / Math.max(ns, 1)));
      break;
    }
    iterations *= 4;
  }
  const perOp: number[] = [];
  for (let b = 0; b < BATCHES; b++) perOp.push(timeBatch(fn, iterations) / iterations);
  perOp.sort((a, b) => a - b);
  results.push({ group, name, ns: perOp[BATCHES >> 1] as number, min: perOp[0] as number });
}

/** Imports a compiled library module, or undefined when this build does not have it. */
async function load(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    return (await import(path)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** A named export of `module` when it is a function; otherwise records `label` as absent. */
function fn<F extends Fn>(module: Record<string, unknown> | undefined, name: string, label: string): F | undefined {
  const value = module?.[name];
  if (typeof value === 'function') return value as F;
  absent.push(label);
  return undefined;
}

const VALID_ID = 'b6a1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d';
const INVALID_ID = 'b6a1c2d3 e4f5 4a6b 8c7d 9e0f1a2b3c4d';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const TRACEPARENT_BAD = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g';
const BAGGAGE_SMALL = 'userId=alice,isProduction=false';
const BAGGAGE_LARGE =
  'userId=alice,tenant=acme%20corp,region=eu-west-1;ttl=60,feature.flags=a%2Cb%2Cc,session=0f9e8d7c6b5a,' +
  'locale=fr-FR,plan=enterprise;source=upstream,score=0.93';
const HEADERS = { 'x-request-id': VALID_ID, traceparent: TRACEPARENT, baggage: BAGGAGE_SMALL, host: '127.0.0.1' };

/** Runs every benchmark the build supports and prints one MICRO_JSON line. */
async function main(): Promise<void> {
  const base = new URL('../src/', import.meta.url).href;
  const cid = await load(`${base}propagation/correlation-id.js`);
  const traceparent = await load(`${base}propagation/traceparent.js`);
  const baggage = await load(`${base}propagation/baggage.js`);
  const tracestate = await load(`${base}propagation/tracestate.js`);
  const ids = await load(`${base}propagation/ids.js`);

  // ---- correlation id ----
  const generate = fn<() => string>(cid, 'generateCorrelationId', 'generateCorrelationId');
  const isValid = fn<(id: string) => boolean>(cid, 'isValidCorrelationId', 'isValidCorrelationId');
  const read = fn<(h: object, n: readonly string[], v: (id: string) => boolean) => string | undefined>(cid, 'readCorrelationId', 'readCorrelationId');
  if (generate) bench('correlation id', 'generateCorrelationId() (UUIDv7)', () => generate());
  // Reference: the former default generator (a version 4 UUID from Node's own pooled random bytes).
  bench('correlation id', 'crypto.randomUUID() (reference, UUIDv4)', () => randomUUID());
  if (isValid) {
    bench('correlation id', 'isValidCorrelationId(valid 36 chars)', () => isValid(VALID_ID));
    bench('correlation id', 'isValidCorrelationId(invalid)', () => isValid(INVALID_ID));
  }
  if (read && isValid) {
    const names = ['x-request-id', 'x-correlation-id'];
    bench('correlation id', 'readCorrelationId(headers, 2 names, default validator)', () => read(HEADERS, names, isValid));
  }

  // ---- trace context ----
  const parseTp = fn<(v: string) => unknown>(traceparent, 'parseTraceparent', 'parseTraceparent');
  const formatTp = fn<(t: string, p: string, f: number) => string>(traceparent, 'formatTraceparent', 'formatTraceparent');
  const traceId = fn<() => string>(ids, 'randomTraceId', 'randomTraceId');
  const spanId = fn<() => string>(ids, 'randomSpanId', 'randomSpanId');
  const parseTs = fn<(v: string) => unknown>(tracestate, 'parseTracestate', 'parseTracestate');
  if (parseTp) {
    bench('trace context', 'parseTraceparent(valid)', () => parseTp(TRACEPARENT));
    bench('trace context', 'parseTraceparent(invalid flags)', () => parseTp(TRACEPARENT_BAD));
  }
  if (formatTp) bench('trace context', 'formatTraceparent(traceId, spanId, flags)', () => formatTp('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7', 1));
  if (traceId) bench('trace context', 'randomTraceId()', () => traceId());
  if (spanId) bench('trace context', 'randomSpanId()', () => spanId());
  if (parseTs) bench('trace context', 'parseTracestate(2 members)', () => parseTs('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'));

  // ---- baggage ----
  const parseBg = fn<(v: string) => unknown[]>(baggage, 'parseBaggage', 'parseBaggage');
  const formatBg = fn<(e: readonly unknown[]) => string>(baggage, 'formatBaggage', 'formatBaggage');
  if (parseBg) {
    bench('baggage', `parseBaggage(2 members, ${BAGGAGE_SMALL.length} B)`, () => parseBg(BAGGAGE_SMALL));
    bench('baggage', `parseBaggage(8 members, escapes, properties, ${BAGGAGE_LARGE.length} B)`, () => parseBg(BAGGAGE_LARGE));
    if (formatBg) {
      const entries = parseBg(BAGGAGE_LARGE);
      bench('baggage', 'formatBaggage(8 members)', () => formatBg(entries));
    }
  }

  // ---- per-request components (diagnosis; internal modules, skipped when they change shape) ----
  const als = new AsyncLocalStorage<object>();
  const store = {};
  const noop = (): number => 1;
  bench('components', 'AsyncLocalStorage.run(store, fn) (a fresh ALS)', () => als.run(store, noop));
  const response = new ServerResponse(new IncomingMessage(new Socket()));
  bench('components', "ServerResponse.setHeader('x-request-id', id)", () => response.setHeader('x-request-id', VALID_ID));
  bench('components', 'IncomingMessage-like headers[name] lookup ×2', () => (HEADERS as Record<string, string>)['x-request-id'] ?? (HEADERS as Record<string, string>)['x-correlation-id']);

  const hostModule = await load(`${base}runtime/context-host.js`);
  const storageModule = await load(`${base}record/context-record.js`);
  const index = await load(`${base}index.js`);
  const Host = hostModule?.ContextHost as (new (cls: unknown, options: object) => Record<string, Fn>) | undefined;
  const storage = storageModule?.storage as AsyncLocalStorage<unknown> | undefined;
  if (Host && storage && index) {
    class BenchContext {
      readonly correlationId: string;
      constructor(init: { correlationId: string }) {
        this.correlationId = init.correlationId;
      }
    }
    try {
      const host = new Host(BenchContext, {}) as unknown as {
        forHttp(req: object, res?: object): { context: BenchContext; trace?: { traceId: string }; outboundHeaders?: () => object };
        enterHttp: (req: object, res: object) => unknown;
      };
      const res = { setHeader: (_n: string, _v: string) => undefined, headersSent: false };
      const fresh = () => ({ headers: HEADERS }) as object;
      bench('components', 'entry: record for a request + echo + storage.run(next) (no-op response)', () => {
        storage.run(host.enterHttp(fresh(), res), noop);
      });
      bench('components', 'record for a request, context built (new MyContext)', () => host.forHttp(fresh(), res).context);
      bench('components', 'record for a request, context + trace read', () => host.forHttp(fresh(), res).trace);
      bench('components', 'record for a request, context + trace + outboundHeaders()', () => {
        const record = host.forHttp(fresh(), res);
        return record.outboundHeaders?.();
      });
      const record = host.forHttp(fresh(), res);
      const currentContext = index.currentContext as { correlationId: string };
      const Service = index.ContextService as new (h: unknown) => { get(): BenchContext };
      const service = new Service(host);
      storage.run(record, () => {
        bench('components', 'storage.getStore() inside a context', () => storage.getStore());
        bench('components', 'contextService.get().correlationId', () => service.get().correlationId);
        bench('components', 'currentContext.correlationId (Proxy)', () => currentContext.correlationId);
      });
      // ---- SQL comment per statement (nestjs-context/sql), inside a request with an inbound traceparent ----
      const sqlModule = await load(`${base}integrations/sql/comment.js`);
      const Commenter = sqlModule?.SqlCommenter as (new (options?: object) => { apply(sql: string): string }) | undefined;
      if (Commenter) {
        const traced = host.forHttp({ headers: HEADERS }, res) as unknown as object & { context: Record<string, unknown> };
        traced.context.tenant = 'acme';
        traced.context.route = '/orders/:id';
        const statement = 'SELECT id, total FROM orders WHERE customer_id = $1';
        const plain = new Commenter();
        const fields = new Commenter({ fields: ['tenant', 'route'] });
        const stable = new Commenter({ traceparent: false });
        storage.run(traced, () => {
          bench('sql comment', 'apply(statement): correlation id + traceparent', () => plain.apply(statement));
          bench('sql comment', 'apply(statement): + 2 declared fields', () => fields.apply(statement));
          bench('sql comment', 'apply(statement): traceparent: false', () => stable.apply(statement));
          let flip = false;
          bench('sql comment', 'apply(statement): + 2 declared fields, both changed before every statement', () => {
            flip = !flip;
            traced.context.tenant = flip ? 'acme' : 'globex';
            traced.context.route = flip ? '/orders/:id' : '/invoices/:id';
            return fields.apply(statement);
          });
        });
        bench('sql comment', 'apply(statement) outside any context', () => plain.apply(statement));
      } else {
        absent.push('sql comment');
      }
    } catch (error) {
      absent.push(`components (${(error as Error).message})`);
    }
  } else {
    absent.push('components (internal modules changed)');
  }

  process.stdout.write(`MICRO_JSON ${JSON.stringify({ node: process.version, results, absent })}\n`);
}

void main();
