import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import { ConformanceModule } from './conformance/conformance.module.js';
import { bootApp, platforms } from './utils/platforms.js';

/**
 * Our equivalent of the official W3C Trace Context test harness (w3c/trace-context `test/test.py`,
 * run as `STRICT_LEVEL=2 SPEC_LEVEL=2 python test.py http://127.0.0.1:8080/test`), against the
 * conformance service in `test/conformance/`.
 *
 * Like the official harness, it sends the service a POST whose body asks for callbacks to a small
 * harness server, with the header fields under test (duplicates and exact casing included), then
 * checks the headers of the callbacks the service made through the propagating `fetch`: exactly one
 * `traceparent` of version 00 with valid ids, same / new trace id, a new parent id, and the
 * `tracestate` list, parsed as the harness parses it (an invalid member there is an error).
 *
 * Each row is named after the official test it mirrors (`Class.test_name [n]` for its n-th request).
 * The official suites followed: Level 1 (`TraceContextTest`, `AdvancedTest`) at STRICT_LEVEL=2 as
 * amended upstream by w3c/trace-context#477 (duplicated tracestate keys: kept or one dropped, never
 * the whole list) and #584 (tracestate keys use the Level 2 grammar, `@` is an ordinary key char),
 * and Level 2 (`TraceContext2Test`, w3c/trace-context#500). Rows marked `[spec]` are not in the
 * official harness: they check Level 2 random-trace-id flag rules of the spec the harness leaves out.
 */

const T = '12345678901234567890123456789012';
const P = '1234567890123456';
const ZERO_TRACE = '00000000000000000000000000000000';

/** Header fields in wire order: `[name, value]`, names in the exact casing to send. */
type Fields = readonly (readonly [name: string, value: string])[];

/** One callback the harness server received. */
interface Callback {
  headers: [string, string][];
  arguments: unknown;
}

/** A callback's trace context, read as the official harness reads it. */
interface TraceContext {
  traceparent: { version: string; traceId: string; parentId: string; flags: number };
  tracestate: Tracestate;
}

// ---------------------------------------------------------------------------------------------
// Parsing the callbacks' headers the way the harness does (written from the spec, not its code)
// ---------------------------------------------------------------------------------------------

/** Level 2 key grammar: `( lcalpha / DIGIT ) 0*255( keychar )`, keychar adds `_ - * / @`. */
const KEY = '[0-9a-z][_0-9a-z\\-*/@]{0,255}';
/** `0*255( chr ) nblk-chr`: printable ASCII except `,` and `=`, not ending with a space. */
const VALUE = '[\\x20-\\x2b\\x2d-\\x3c\\x3e-\\x7e]{0,255}[\\x21-\\x2b\\x2d-\\x3c\\x3e-\\x7e]';
const MEMBER = new RegExp(`^(${KEY})=(${VALUE})$`);

/** The harness's view of `tracestate`: members of all fields in order, the first of a repeated key kept. */
class Tracestate {
  private readonly members = new Map<string, string>();

  /** Adds the members of one header field; an invalid member throws, as in the harness. */
  add(field: string): void {
    for (const member of field.trim().split(/[ \t]*,[ \t]*/)) {
      if (member === '') continue;
      const match = MEMBER.exec(member);
      if (match === null) throw new Error(`callback carried an illegal tracestate member ${JSON.stringify(member)}`);
      if (!this.members.has(match[1]!)) this.members.set(match[1]!, match[2]!);
    }
  }

  get size(): number {
    return this.members.size;
  }
  has(key: string): boolean {
    return this.members.has(key);
  }
  get(key: string): string | undefined {
    return this.members.get(key);
  }
  toString(): string {
    return [...this.members].map(([k, v]) => `${k}=${v}`).join(',');
  }
}

/** Header fields named `name` (ASCII case-insensitive), in order. */
function fieldsNamed(headers: readonly [string, string][], name: string): string[] {
  return headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

/** Exactly one `traceparent` of version 00 with valid, non-zero ids, as the harness requires. */
function readTraceContext(callback: Callback): TraceContext {
  const traceparents = fieldsNamed(callback.headers, 'traceparent');
  if (traceparents.length !== 1) {
    throw new Error(`expected one traceparent header on the callback, got ${traceparents.length}: ${JSON.stringify(traceparents)}`);
  }
  const value = traceparents[0]!;
  const parts = value.split('-');
  const [version, traceId, parentId, flags] = parts as [string, string, string, string];
  const valid =
    parts.length === 4 &&
    version === '00' &&
    /^[0-9a-f]{32}$/.test(traceId) &&
    traceId !== ZERO_TRACE &&
    /^[0-9a-f]{16}$/.test(parentId) &&
    parentId !== '0000000000000000' &&
    /^[0-9a-f]{2}$/.test(flags);
  if (!valid) throw new Error(`callback carried an invalid traceparent ${JSON.stringify(value)}`);
  const tracestate = new Tracestate();
  for (const field of fieldsNamed(callback.headers, 'tracestate')) tracestate.add(field);
  return { traceparent: { version, traceId, parentId, flags: Number.parseInt(flags, 16) }, tracestate };
}

// ---------------------------------------------------------------------------------------------
// The harness server and client
// ---------------------------------------------------------------------------------------------

/** Receives `POST /callback/{scope}.{index}` and records headers and body per scope. */
class HarnessServer {
  private readonly scopes = new Map<string, Map<string, Callback>>();
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
  }

  /** Opens a scope and returns its id; callbacks are collected until {@link close}. */
  open(): string {
    const id = randomBytes(16).toString('hex');
    this.scopes.set(id, new Map());
    return id;
  }

  close(id: string): Map<string, Callback> {
    const scope = this.scopes.get(id) ?? new Map<string, Callback>();
    this.scopes.delete(id);
    return scope;
  }

  callbackUrl(scope: string, index: number): string {
    return `${this.url}/callback/${scope}.${index}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const match = req.method === 'POST' ? /^\/callback\/([0-9a-f]+)\.(\d+)$/.exec(req.url ?? '') : null;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const scope = match === null ? undefined : this.scopes.get(match[1]!);
    if (match === null || scope === undefined) {
      res.writeHead(404).end();
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400).end();
      return;
    }
    const headers: [string, string][] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    scope.set(match[2]!, { headers, arguments: body });
    res.writeHead(200, { 'content-type': 'application/json' }).end('null');
  }
}

/**
 * POSTs `body` to `url` with node:http, so that repeated fields (two `traceparent` lines) and exact
 * casing reach the service as given. Repeated fields must share one spelling (they do in every
 * official test); they are sent as separate lines, in order.
 */
function post(url: string, fields: Fields, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setHeader('Accept', 'application/json');
    req.setHeader('Content-Type', 'application/json');
    const grouped = new Map<string, { name: string; values: string[] }>();
    for (const [name, value] of fields) {
      const group = grouped.get(name.toLowerCase());
      if (group === undefined) grouped.set(name.toLowerCase(), { name, values: [value] });
      else if (group.name !== name) throw new Error(`repeated field ${name} must keep one spelling (${group.name})`);
      else group.values.push(value);
    }
    for (const { name, values } of grouped.values()) req.setHeader(name, values.length === 1 ? values[0]! : values);
    req.end(body);
  });
}

/** Does what the harness's `make_request` does: one request to the service asking for `count` callbacks. */
async function makeRequest(harness: HarnessServer, serviceUrl: string, fields: Fields, count: number): Promise<Callback[]> {
  const scope = harness.open();
  try {
    const actions = Array.from({ length: count }, (_, i) => ({ url: harness.callbackUrl(scope, i), arguments: [] }));
    const response = await post(serviceUrl, fields, JSON.stringify(actions));
    expect({ status: response.status, body: response.body }).toEqual({ status: 200, body: expect.any(String) });
    const callbacks = harness.close(scope);
    return actions.map((_, i) => {
      const callback = callbacks.get(String(i));
      if (callback === undefined) {
        throw new Error(`the service failed to make callback ${i} to the harness (service answered ${response.status} ${response.body})`);
      }
      expect(callback.arguments).toEqual([]);
      return callback;
    });
  } finally {
    harness.close(scope);
  }
}

// ---------------------------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------------------------

interface Row {
  /** The official test mirrored, `[n]` being its n-th request. */
  name: string;
  /** Header fields of each request sent to the service (most rows send one). */
  requests: Fields[];
  /** Callbacks asked for per request (default 1). */
  count?: number;
  /** The harness's assertions, on the callbacks' trace context: `results[request][callback]`. */
  check(results: TraceContext[][]): void;
}

/** A row of one request and one callback. */
function single(name: string, fields: Fields, check: (tc: TraceContext) => void): Row {
  return { name, requests: [fields], check: (results) => check(results[0]![0]!) };
}

const tp = (value: string): [string, string] => ['traceparent', value];
const ts = (value: string): [string, string] => ['tracestate', value];
/** A valid version 00 traceparent, not sampled, as the harness's tracestate tests send. */
const TP00 = tp(`00-${T}-${P}-00`);

/** The harness's "same trace id" expectation. */
const sameTrace = (tc: TraceContext): void => expect(tc.traceparent.traceId).toBe(T);
/** The harness's "newly generated trace id" expectation: the trace id differs from each of `ids`. */
const newTrace =
  (...ids: string[]) =>
  (tc: TraceContext): void => {
    for (const id of ids) expect(tc.traceparent.traceId).not.toBe(id);
  };
/** `tracestate[key]` is `value`. */
const inherits =
  (entries: Record<string, string>) =>
  (tc: TraceContext): void => {
    for (const [key, value] of Object.entries(entries)) expect({ key, value: tc.tracestate.get(key) }).toEqual({ key, value });
  };
/** `tracestate[key]` raises KeyError for each key. */
const lacks =
  (...keys: string[]) =>
  (tc: TraceContext): void => {
    for (const key of keys) expect({ key, present: tc.tracestate.has(key) }).toEqual({ key, present: false });
  };
const both =
  (...checks: ((tc: TraceContext) => void)[]) =>
  (tc: TraceContext): void => {
    for (const check of checks) check(tc);
  };

/** Multi-callback rows (AdvancedTest): one trace id over all callbacks, distinct parent ids. */
function multiple(name: string, fields: Fields, check: (traceIds: Set<string>, parentIds: Set<string>) => void): Row {
  return {
    name,
    requests: [fields],
    count: 3,
    check: ([callbacks]) => {
      const traceIds = new Set(callbacks!.map((tc) => tc.traceparent.traceId));
      const parentIds = new Set(callbacks!.map((tc) => tc.traceparent.parentId));
      check(traceIds, parentIds);
    },
  };
}

const KEY_WITHOUT_VENDOR = 'abcdefghijklmnopqrstuvwxyz0123456789_-*/';
const KEY_WITH_VENDOR = `${KEY_WITHOUT_VENDOR}@a-z0-9_-*/`;
/** Every legal value character: 0x20–0x2B, 0x2D–0x3C, 0x3E–0x7E (so it starts with a space). */
const ALL_VALUE_CHARS = [
  [0x20, 0x2b],
  [0x2d, 0x3c],
  [0x3e, 0x7e],
]
  .map(([from, to]) => Array.from({ length: to! - from! + 1 }, (_, i) => String.fromCharCode(from! + i)).join(''))
  .join('');
const members = (from: number, to: number): string =>
  Array.from({ length: to - from + 1 }, (_, i) => {
    const n = String(from + i).padStart(2, '0');
    return `bar${n}=${n}`;
  }).join(',');

const traceContextTest: Row[] = [
  single('TraceContextTest.test_both_traceparent_and_tracestate_missing', [], () => {}),
  single('TraceContextTest.test_traceparent_included_tracestate_missing', [tp(`00-${T}-${P}-01`)], (tc) => {
    sameTrace(tc);
    expect(tc.traceparent.parentId).not.toBe(P);
  }),
  single(
    'TraceContextTest.test_traceparent_duplicated',
    [tp('00-12345678901234567890123456789011-1234567890123456-01'), tp(`00-${T}-${P}-01`)],
    newTrace('12345678901234567890123456789011', T),
  ),
  single('TraceContextTest.test_traceparent_header_name [1] trace-parent', [['trace-parent', `00-${T}-${P}-01`]], newTrace(T)),
  single('TraceContextTest.test_traceparent_header_name [2] trace.parent', [['trace.parent', `00-${T}-${P}-01`]], newTrace(T)),
  single('TraceContextTest.test_traceparent_header_name_valid_casing [1] TraceParent', [['TraceParent', `00-${T}-${P}-01`]], sameTrace),
  single('TraceContextTest.test_traceparent_header_name_valid_casing [2] TrAcEpArEnT', [['TrAcEpArEnT', `00-${T}-${P}-01`]], sameTrace),
  single('TraceContextTest.test_traceparent_header_name_valid_casing [3] TRACEPARENT', [['TRACEPARENT', `00-${T}-${P}-01`]], sameTrace),
  single('TraceContextTest.test_traceparent_version_0x00 [1] trailing "."', [tp(`00-${T}-${P}-01.`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_version_0x00 [2] trailing fields', [tp(`00-${T}-${P}-01-what-the-future-will-be-like`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_version_0xcc [1] 55 characters', [tp(`cc-${T}-${P}-01`)], sameTrace),
  single('TraceContextTest.test_traceparent_version_0xcc [2] future fields', [tp(`cc-${T}-${P}-01-what-the-future-will-be-like`)], sameTrace),
  single('TraceContextTest.test_traceparent_version_0xcc [3] "." after flags', [tp(`cc-${T}-${P}-01.what-the-future-will-be-like`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_version_0xff', [tp(`ff-${T}-${P}-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_version_illegal_characters [1] .0', [tp(`.0-${T}-${P}-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_version_illegal_characters [2] 0.', [tp(`0.-${T}-${P}-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_version_too_long [1] 000', [tp(`000-${T}-${P}-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_version_too_long [2] 0000', [tp(`0000-${T}-${P}-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_version_too_short', [tp(`0-${T}-${P}-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_trace_id_all_zero', [tp(`00-${ZERO_TRACE}-${P}-01`)], newTrace(ZERO_TRACE)),
  single(
    'TraceContextTest.test_traceparent_trace_id_illegal_characters [1] leading "."',
    [tp(`00-.2345678901234567890123456789012-${P}-01`)],
    newTrace('.2345678901234567890123456789012', T),
  ),
  single(
    'TraceContextTest.test_traceparent_trace_id_illegal_characters [2] trailing "."',
    [tp(`00-1234567890123456789012345678901.-${P}-01`)],
    newTrace('1234567890123456789012345678901.', T),
  ),
  single(
    'TraceContextTest.test_traceparent_trace_id_too_long',
    [tp(`00-123456789012345678901234567890123-${P}-01`)],
    newTrace('123456789012345678901234567890123', T, '23456789012345678901234567890123'),
  ),
  single(
    'TraceContextTest.test_traceparent_trace_id_too_short',
    [tp(`00-1234567890123456789012345678901-${P}-01`)],
    newTrace('1234567890123456789012345678901'),
  ),
  single('TraceContextTest.test_traceparent_parent_id_all_zero', [tp(`00-${T}-0000000000000000-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_parent_id_illegal_characters [1] leading "."', [tp(`00-${T}-.234567890123456-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_parent_id_illegal_characters [2] trailing "."', [tp(`00-${T}-123456789012345.-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_parent_id_too_long', [tp(`00-${T}-12345678901234567-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_parent_id_too_short', [tp(`00-${T}-123456789012345-01`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_trace_flags_illegal_characters [1] .0', [tp(`00-${T}-${P}-.0`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_trace_flags_illegal_characters [2] 0.', [tp(`00-${T}-${P}-0.`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_trace_flags_too_long', [tp(`00-${T}-${P}-001`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_trace_flags_too_short', [tp(`00-${T}-${P}-1`)], newTrace(T)),
  single('TraceContextTest.test_traceparent_ows_handling [1] leading space', [tp(` 00-${T}-${P}-01`)], sameTrace),
  single('TraceContextTest.test_traceparent_ows_handling [2] leading tab', [tp(`\t00-${T}-${P}-01`)], sameTrace),
  single('TraceContextTest.test_traceparent_ows_handling [3] trailing space', [tp(`00-${T}-${P}-01 `)], sameTrace),
  single('TraceContextTest.test_traceparent_ows_handling [4] trailing tab', [tp(`00-${T}-${P}-01\t`)], sameTrace),
  single('TraceContextTest.test_traceparent_ows_handling [5] both', [tp(`\t 00-${T}-${P}-01 \t`)], sameTrace),

  {
    name: 'TraceContextTest.test_tracestate_included_traceparent_missing',
    requests: [[ts('foo=1')], [ts('foo=1,bar=2')]],
    check: ([[first], [second]]) => {
      expect(first!.tracestate.size).toBe(second!.tracestate.size);
      lacks('foo', 'bar')(first!);
      lacks('foo', 'bar')(second!);
    },
  },
  single('TraceContextTest.test_tracestate_included_traceparent_included', [TP00, ts('foo=1,bar=2')], both(sameTrace, inherits({ foo: '1', bar: '2' }))),
  single('TraceContextTest.test_tracestate_header_name [1] trace-state', [TP00, ['trace-state', 'foo=1']], lacks('foo')),
  single('TraceContextTest.test_tracestate_header_name [2] trace.state', [TP00, ['trace.state', 'foo=1']], lacks('foo')),
  single('TraceContextTest.test_tracestate_header_name_valid_casing [1] TraceState', [TP00, ['TraceState', 'foo=1']], inherits({ foo: '1' })),
  single('TraceContextTest.test_tracestate_header_name_valid_casing [2] TrAcEsTaTe', [TP00, ['TrAcEsTaTe', 'foo=1']], inherits({ foo: '1' })),
  single('TraceContextTest.test_tracestate_header_name_valid_casing [3] TRACESTATE', [TP00, ['TRACESTATE', 'foo=1']], inherits({ foo: '1' })),
  {
    name: 'TraceContextTest.test_tracestate_empty_header [1] one empty field',
    requests: [[TP00, ts('')]],
    check: ([[tc]]) => {
      sameTrace(tc!);
      expect(tc!.tracestate.size).toBe(0);
    },
  },
  single('TraceContextTest.test_tracestate_empty_header [2] foo=1 then empty', [TP00, ts('foo=1'), ts('')], both(sameTrace, inherits({ foo: '1' }))),
  single('TraceContextTest.test_tracestate_empty_header [3] empty then foo=1', [TP00, ts(''), ts('foo=1')], both(sameTrace, inherits({ foo: '1' }))),
  single(
    'TraceContextTest.test_tracestate_multiple_headers_different_keys',
    [TP00, ts('foo=1,bar=2'), ts('rojo=1,congo=2'), ts('baz=3')],
    (tc) => {
      sameTrace(tc);
      const s = tc.tracestate.toString();
      const at = ['foo=1', 'bar=2', 'rojo=1', 'congo=2', 'baz=3'].map((m) => s.indexOf(m));
      expect(at.every((i) => i >= 0)).toBe(true);
      expect([...at].sort((a, b) => a - b)).toEqual(at);
    },
  ),
  // STRICT_LEVEL >= 2; since w3c/trace-context#477 a repeated key may be kept or dropped, the list is never emptied.
  single('TraceContextTest.test_tracestate_duplicated_keys [1] foo=1,foo=1', [TP00, ts('foo=1,foo=1')], both(sameTrace, inherits({ foo: '1' }))),
  single('TraceContextTest.test_tracestate_duplicated_keys [2] foo=1,foo=2', [TP00, ts('foo=1,foo=2')], (tc) => {
    sameTrace(tc);
    expect(['1', '2']).toContain(tc.tracestate.get('foo'));
  }),
  single('TraceContextTest.test_tracestate_duplicated_keys [3] fields foo=1 + foo=1', [TP00, ts('foo=1'), ts('foo=1')], both(sameTrace, inherits({ foo: '1' }))),
  single('TraceContextTest.test_tracestate_duplicated_keys [4] fields foo=1 + foo=2', [TP00, ts('foo=1'), ts('foo=2')], (tc) => {
    sameTrace(tc);
    expect(['1', '2']).toContain(tc.tracestate.get('foo'));
  }),
  single(
    'TraceContextTest.test_tracestate_all_allowed_characters [1] key without "@"',
    [TP00, ts(`${KEY_WITHOUT_VENDOR}=${ALL_VALUE_CHARS}`)],
    inherits({ [KEY_WITHOUT_VENDOR]: ALL_VALUE_CHARS }),
  ),
  single(
    'TraceContextTest.test_tracestate_all_allowed_characters [2] key with "@"',
    [TP00, ts(`${KEY_WITH_VENDOR}=${ALL_VALUE_CHARS}`)],
    inherits({ [KEY_WITH_VENDOR]: ALL_VALUE_CHARS }),
  ),
  single('TraceContextTest.test_tracestate_ows_handling [1] spaces and tabs around commas', [TP00, ts('foo=1 \t , \t bar=2, \t baz=3')], inherits({ foo: '1', bar: '2', baz: '3' })),
  single('TraceContextTest.test_tracestate_ows_handling [2] tabs and spaces around commas', [TP00, ts('foo=1\t \t,\t \tbar=2,\t \tbaz=3')], inherits({ foo: '1', bar: '2', baz: '3' })),
  single('TraceContextTest.test_tracestate_ows_handling [3] leading space', [TP00, ts(' foo=1')], both(sameTrace, inherits({ foo: '1' }))),
  single('TraceContextTest.test_tracestate_ows_handling [4] leading tab', [TP00, ts('\tfoo=1')], both(sameTrace, inherits({ foo: '1' }))),
  single('TraceContextTest.test_tracestate_ows_handling [5] trailing space', [TP00, ts('foo=1 ')], both(sameTrace, inherits({ foo: '1' }))),
  single('TraceContextTest.test_tracestate_ows_handling [6] trailing tab', [TP00, ts('foo=1\t')], both(sameTrace, inherits({ foo: '1' }))),
  single('TraceContextTest.test_tracestate_ows_handling [7] both', [TP00, ts('\t foo=1 \t')], both(sameTrace, inherits({ foo: '1' }))),
  // STRICT_LEVEL >= 2 from here on.
  single('TraceContextTest.test_tracestate_key_illegal_characters [1] "foo "', [TP00, ts('foo =1')], lacks('foo ')),
  single('TraceContextTest.test_tracestate_key_illegal_characters [2] FOO', [TP00, ts('FOO=1')], lacks('FOO')),
  single('TraceContextTest.test_tracestate_key_illegal_characters [3] foo.bar', [TP00, ts('foo.bar=1')], lacks('foo.bar')),
  // Level 2 key grammar (w3c/trace-context#584): "@" is an ordinary key character, only not the first.
  single('TraceContextTest.test_tracestate_key_illegal_vendor_format [1] foo@ (valid)', [TP00, ts('foo@=1,bar=2')], inherits({ 'foo@': '1', bar: '2' })),
  single('TraceContextTest.test_tracestate_key_illegal_vendor_format [2] @foo (invalid)', [TP00, ts('@foo=1,bar=2')], lacks('bar')),
  single('TraceContextTest.test_tracestate_key_illegal_vendor_format [3] foo@@bar (valid)', [TP00, ts('foo@@bar=1,bar=2')], inherits({ 'foo@@bar': '1', bar: '2' })),
  single('TraceContextTest.test_tracestate_key_illegal_vendor_format [4] foo@bar@baz (valid)', [TP00, ts('foo@bar@baz=1,bar=2')], inherits({ 'foo@bar@baz': '1', bar: '2' })),
  single('TraceContextTest.test_tracestate_member_count_limit [1] 32 members', [TP00, ts(members(1, 10)), ts(members(11, 20)), ts(members(21, 30)), ts(members(31, 32))], (tc) => {
    inherits({ bar01: '01', bar32: '32' })(tc);
    expect(tc.tracestate.size).toBe(32);
  }),
  single('TraceContextTest.test_tracestate_member_count_limit [2] 33 members', [TP00, ts(members(1, 10)), ts(members(11, 20)), ts(members(21, 30)), ts(members(31, 33))], lacks('bar01')),
  single('TraceContextTest.test_tracestate_key_length_limit [1] key of 256', [TP00, ts('foo=1'), ts(`${'z'.repeat(256)}=1`)], inherits({ foo: '1' })),
  single('TraceContextTest.test_tracestate_key_length_limit [2] key of 257', [TP00, ts('foo=1'), ts(`${'z'.repeat(257)}=1`)], lacks('foo')),
  single('TraceContextTest.test_tracestate_key_length_limit [3] 241 + "@" + 14 (valid)', [TP00, ts('foo=1'), ts(`${'t'.repeat(241)}@${'v'.repeat(14)}=1`)], inherits({ foo: '1' })),
  single('TraceContextTest.test_tracestate_key_length_limit [4] 242 + "@v" (valid in Level 2)', [TP00, ts('foo=1'), ts(`${'t'.repeat(242)}@v=1`)], inherits({ foo: '1', [`${'t'.repeat(242)}@v`]: '1' })),
  single('TraceContextTest.test_tracestate_key_length_limit [5] "t@" + 15 (valid in Level 2)', [TP00, ts('foo=1'), ts(`t@${'v'.repeat(15)}=1`)], inherits({ foo: '1', [`t@${'v'.repeat(15)}`]: '1' })),
  single('TraceContextTest.test_tracestate_value_illegal_characters [1] foo=bar=baz', [TP00, ts('foo=bar=baz')], lacks('foo')),
  single('TraceContextTest.test_tracestate_value_illegal_characters [2] empty value', [TP00, ts('foo=,bar=3')], lacks('foo', 'bar')),
];

const advancedTest: Row[] = [
  multiple('AdvancedTest.test_multiple_requests_with_valid_traceparent', [tp(`00-${T}-${P}-01`)], (traceIds, parentIds) => {
    expect([...traceIds]).toEqual([T]);
    expect(parentIds.size).toBe(3);
  }),
  // The official test checks distinct parent ids only; one trace id per incoming request is ours.
  multiple('AdvancedTest.test_multiple_requests_without_traceparent', [], (traceIds, parentIds) => {
    expect(traceIds.size).toBe(1);
    expect(parentIds.size).toBe(3);
  }),
  multiple('AdvancedTest.test_multiple_requests_with_illegal_traceparent', [tp(`00-${ZERO_TRACE}-${P}-01`)], (traceIds, parentIds) => {
    expect(traceIds.has(ZERO_TRACE)).toBe(false);
    expect(traceIds.size).toBe(1);
    expect(parentIds.size).toBe(3);
  }),
];

const RANDOM = 0x02;
const SAMPLED = 0x01;

const traceContext2Test: Row[] = [
  single('TraceContext2Test.test_propagates_random_flag', [tp(`00-${T}-${P}-02`)], (tc) => {
    sameTrace(tc);
    expect(tc.traceparent.parentId).not.toBe(P);
    expect(tc.traceparent.flags & RANDOM).toBe(RANDOM);
  }),
  // [spec] rows: Level 2 §Random Trace ID Flag and §Other Flags, beyond the official harness.
  single('[spec] TraceContext2: random flag unset on a continued trace stays unset (00-T-P-01)', [tp(`00-${T}-${P}-01`)], (tc) => {
    sameTrace(tc);
    expect(tc.traceparent.flags & RANDOM).toBe(0);
    expect(tc.traceparent.flags & SAMPLED).toBe(SAMPLED);
  }),
  single('[spec] TraceContext2: random and sampled both kept (00-T-P-03)', [tp(`00-${T}-${P}-03`)], (tc) => {
    sameTrace(tc);
    expect(tc.traceparent.flags).toBe(RANDOM | SAMPLED);
  }),
  single('[spec] TraceContext2: unknown flag bits are sent as zero (00-T-P-ff)', [tp(`00-${T}-${P}-ff`)], (tc) => {
    sameTrace(tc);
    expect(tc.traceparent.flags).toBe(RANDOM | SAMPLED);
  }),
  single('[spec] TraceContext2: a new trace (no traceparent) sets the random flag', [], (tc) => {
    expect(tc.traceparent.flags & RANDOM).toBe(RANDOM);
  }),
  single('[spec] TraceContext2: a restarted trace (invalid traceparent) sets the random flag', [tp(`ff-${T}-${P}-00`)], (tc) => {
    newTrace(T)(tc);
    expect(tc.traceparent.flags & RANDOM).toBe(RANDOM);
  }),
];

const rows: Row[] = [...traceContextTest, ...advancedTest, ...traceContext2Test];

/** The one row also run on Fastify: several callbacks, continued trace, body parsing and fetch. */
const FASTIFY_SMOKE = 'AdvancedTest.test_multiple_requests_with_valid_traceparent';

// ---------------------------------------------------------------------------------------------

async function runRow(harness: HarnessServer, serviceUrl: string, row: Row): Promise<void> {
  const results: TraceContext[][] = [];
  for (const fields of row.requests) {
    const callbacks = await makeRequest(harness, serviceUrl, fields, row.count ?? 1);
    results.push(callbacks.map(readTraceContext));
  }
  row.check(results);
}

/** Boots the conformance service on a loopback port for the enclosing describe block; `url` is its POST /test. */
function serveConformance(makeAdapter: (typeof platforms)[number][1]): { readonly url: string } {
  let app: INestApplication | undefined;
  const service = { url: '' };
  beforeAll(async () => {
    app = await bootApp(ConformanceModule, makeAdapter);
    await app.listen(0, '127.0.0.1');
    service.url = `${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/test`;
  });
  afterAll(() => app?.close());
  return service;
}

describe('W3C Trace Context conformance service (the official harness scenarios)', () => {
  const harness = new HarnessServer();

  beforeAll(() => harness.start());
  afterAll(() => harness.stop());

  it('has one row per request of every official Level 1 and Level 2 test', () => {
    expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
    expect(rows.filter((r) => !r.name.startsWith('[spec]')).length).toBe(82);
  });

  describe.each(platforms.filter(([name]) => name === 'express'))('on %s', (_name, makeAdapter) => {
    const service = serveConformance(makeAdapter);

    it.each(rows.map((row) => [row.name, row] as const))('%s', (_rowName, row) => runRow(harness, service.url, row));

    it('rejects a body that is not a list of { url, arguments } without calling anyone', async () => {
      for (const body of ['"x"', '[{"arguments":[]}]', '[{"url":"file:///etc/passwd"}]']) {
        const response = await post(service.url, [], body);
        expect({ body, status: response.status }).toEqual({ body, status: 400 });
      }
    });

    it('answers 200 with one result per call, in order', async () => {
      const scope = harness.open();
      try {
        const actions = [0, 1].map((i) => ({ url: harness.callbackUrl(scope, i), arguments: [{ url: 'http://127.0.0.1:1/x', arguments: [] }] }));
        const response = await post(service.url, [], JSON.stringify(actions));
        expect(response.status).toBe(200);
        expect(JSON.parse(response.body)).toEqual(actions.map(({ url }) => ({ url, status: 200 })));
        const callbacks = harness.close(scope);
        expect(callbacks.get('0')?.arguments).toEqual(actions[0]!.arguments);
      } finally {
        harness.close(scope);
      }
    });
  });

  describe.each(platforms.filter(([name]) => name === 'fastify'))('on %s (smoke)', (_name, makeAdapter) => {
    const service = serveConformance(makeAdapter);

    it(FASTIFY_SMOKE, () => runRow(harness, service.url, rows.find((r) => r.name === FASTIFY_SMOKE)!));
  });
});
