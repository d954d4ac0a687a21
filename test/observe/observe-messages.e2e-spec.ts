// nestjs-context with @nestjs/observe (the real package) on microservice messages, under the app's
// own id rules: Observe names a message in its processing hook, before the library's context opens,
// by asking `traceIdGenerator` — which answers with the id the app's entry will accept (its id
// headers, `validate` and trust policy, read from the transport's own metadata: TCP packet metadata,
// NATS headers), else a fresh id the context then adopts. One id in the handler in every case: the
// correlation id is Observe's `currentTraceId()`. The app (fixtures/messages.ts) runs in its own Node
// process and sends the messages to itself from inside an HTTP request; NATS is the real broker.
import { removeTree, startScript, transpile, type ChildApp } from '../logging/child.js';
import { freePort, requireBroker, uniqueName } from '../utils/brokers.js';
import { DEFAULT_ID } from '../utils/ids.js';
import { Collector } from './collector.js';
import { TcpContext } from '@nestjs/microservices';

/**
 * Whether the installed @nestjs/microservices carries TCP packet metadata (NestJS 12). On NestJS 11 a
 * TCP message carries the context in the payload envelope, which Observe's hook runs before and cannot
 * read (docs/observe.md, "Limits"): the TCP rows exist only where they can hold.
 */
const tcpMetadata = typeof (TcpContext.prototype as { getMetadata?: unknown }).getMetadata === 'function';
const VIAS = tcpMetadata ? ['tcp', 'nats'] : ['nats'];

interface Seen {
  correlationId: string | undefined;
  observe: string | null;
}

const collector = new Collector();
let out: string | undefined;

beforeAll(async () => {
  await requireBroker('nats');
  out = transpile({ dirs: ['test/observe'] });
  await collector.start();
});
afterAll(async () => {
  await collector.close();
  removeTree(out);
});

/** Sends one message over `via` from inside a request carrying `inbound` (if any); what the request and the handler saw. */
async function send(app: ChildApp, via: string, inbound?: string): Promise<{ requestId: string; sender: Seen; handler: Seen }> {
  const res = await fetch(`${app.url}/send/${via}`, { headers: inbound === undefined ? {} : { 'x-request-id': inbound } });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { sender: Seen; handler: Seen };
  return { requestId: res.headers.get('x-request-id') as string, ...body };
}

describe.each([
  ['the default rules', 'default'],
  ['a trust policy that refuses message ids (a request predicate)', 'predicate'],
  ['a validator Observe alone would not follow (spaces allowed)', 'validate'],
] as const)('@nestjs/observe and nestjs-context on messages, %s', (_name, mode) => {
  let app: ChildApp | undefined;
  beforeAll(async () => {
    app = await startScript(out as string, 'test/observe/fixtures/messages.js', [collector.url, String(await freePort()), uniqueName('observe.ids'), mode]);
  });
  afterAll(async () => {
    await app?.stop();
  });

  const inbound = mode === 'validate' ? 'order 42' : 'order-42';

  it.each(VIAS)('over %s: one id in the handler, the one the app chose', async (via) => {
    for (const sent of [undefined, inbound]) {
      const { requestId, sender, handler } = await send(app as ChildApp, via, sent);
      expect(sender).toEqual({ correlationId: requestId, observe: requestId });
      expect(handler.observe).toBe(handler.correlationId);
      if (mode === 'predicate') {
        // The message carries the request's id; the app does not trust it on a message: a fresh id, on
        // both sides, and Observe reports the message's operation under it.
        expect(handler.correlationId).toMatch(DEFAULT_ID);
        expect(handler.correlationId).not.toBe(requestId);
        const [snapshot] = await collector.waitFor(handler.correlationId as string, 1);
        expect(snapshot?.p).toBe(via.toUpperCase());
      } else {
        // (The collector is not asked here: the message and the request that sent it run in one process
        // under one id, and Observe keeps one operation per id at a time; docs/observe.md, Limits.)
        expect(handler.correlationId).toBe(requestId);
        if (sent !== undefined) expect(requestId).toBe(sent);
      }
    }
  });
});
