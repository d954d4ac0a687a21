// nestjs-context with @nestjs/observe (the real package) on the entries where Observe opens its own
// operation and names it without asking `traceIdGenerator`: BullMQ jobs, `@nestjs/schedule` runs and
// gateway messages. One id on both sides: inside the handler, the correlation id is Observe's
// `currentTraceId()`; the handler's log line carries it once; the collector (a loopback stand-in)
// gets the operation under it. The app runs in its own Node process (see fixtures/entries.ts), with
// real Redis; a second run shows what remains (docs/observe.md, "Limits").
import { Queue } from 'bullmq';
import { io, type Socket } from 'socket.io-client';
import { removeTree, startScript, transpile, type ChildApp } from '../logging/child.js';
import { brokers, requireBroker, uniqueName } from '../utils/brokers.js';
import { DEFAULT_ID } from '../utils/ids.js';
import { Collector } from './collector.js';
import { createRequire } from 'node:module';

/** The installed NestJS major: NestJS 11 applies no global interceptor to gateways, so a gateway without ContextWsModule has no context there. */
const NEST_MAJOR = Number((createRequire(import.meta.url)('@nestjs/core/package.json') as { version: string }).version.split('.')[0]);

/** What a handler of the fixture saw (a `SEEN` line). */
interface Seen {
  entry: string;
  key: string;
  correlationId: string | undefined;
  observe: string | null;
  /** Jobs: the id Observe stamped on the job (`opts.observeTraceId`). */
  stamped?: string;
  /** `/add`: the ids where `queue.add()` ran. */
  addedIn?: { correlationId?: string; observe: string | null };
}

const connection = { host: brokers.redis.host, port: brokers.redis.port };
const collector = new Collector();
let out: string | undefined;

beforeAll(async () => {
  await requireBroker('redis');
  out = transpile({ dirs: ['test/observe'] });
  await collector.start();
});
afterAll(async () => {
  await collector.close();
  removeTree(out);
});

/** The fixture app in its own process, and its queue (emptied and closed at the end). */
function runApp(flags: readonly string[]): { app: () => ChildApp } {
  const queueName = uniqueName('observe-jobs');
  let app: ChildApp | undefined;
  beforeAll(async () => {
    app = await startScript(out as string, 'test/observe/fixtures/entries.js', [collector.url, queueName, ...flags]);
  });
  afterAll(async () => {
    await app?.stop();
    const queue = new Queue(queueName, { connection });
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  });
  return { app: () => app as ChildApp };
}

/** The `SEEN` line of `entry` / `key`, once the app has written it (at most 10 s). */
async function seen(app: ChildApp, entry: string, key: string): Promise<Seen> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    for (const line of app.lines()) {
      if (!line.startsWith('SEEN ')) continue;
      let parsed: Seen;
      try {
        parsed = JSON.parse(line.slice(5)) as Seen;
      } catch {
        continue; // the last line, still arriving
      }
      if (parsed.entry === entry && parsed.key === key) return parsed;
    }
    if (Date.now() > deadline) throw new Error(`no SEEN line for ${entry} ${key}:\n${app.lines().join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The log line that ends its message with `text` (ContextLogger, text: Observe's suffix after it); call it once the handler's `SEEN` line, written after it, is in. */
function logLine(app: ChildApp, text: string): string {
  const line = app.lines().find((l) => !l.startsWith('SEEN ') && l.includes(`] ${text} `));
  if (line === undefined) throw new Error(`no log line "${text}":\n${app.lines().join('\n')}`);
  return line;
}

/** The line carries `id` once — Observe's `Trace ID:` suffix — and no second id of ours. */
function expectOneId(line: string, id: string): void {
  expect(line).toContain(`Trace ID: ${id}`);
  expect(line.split(id)).toHaveLength(2);
  expect(line).not.toContain('correlationId=');
}

/** Sends one gateway message and resolves with its acknowledgement. */
async function message(url: string, key: string): Promise<Seen> {
  const socket: Socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return (await socket.timeout(5000).emitWithAck('ids', { key })) as Seen;
  } finally {
    socket.close();
  }
}

describe('@nestjs/observe and nestjs-context: one id on jobs, scheduled runs and gateway messages', () => {
  const { app } = runApp(['--ws-module']);

  it.each([
    ['without an inbound id', 'in-request', undefined],
    ['with an inbound id', 'in-request-inbound', 'job-inbound-1'],
  ] as const)("a job added inside a request, %s: the request's id on both sides", async (_case, key, inbound) => {
    const res = await fetch(`${app().url}/add/request/${key}`, { headers: inbound === undefined ? {} : { 'x-request-id': inbound } });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-request-id') as string;
    if (inbound === undefined) expect(id).toMatch(DEFAULT_ID);
    else expect(id).toBe(inbound);
    expect((await res.json()) as Seen).toMatchObject({ correlationId: id, observe: id, addedIn: { correlationId: id, observe: id } });

    expect(await seen(app(), 'job', key)).toMatchObject({ correlationId: id, observe: id, stamped: id });
    expectOneId(logLine(app(), `job ${key}`), id);
    const snapshots = await collector.waitFor(id, 2);
    expect(snapshots.map((s) => (s.p === undefined ? 'job' : s.p)).sort()).toEqual(['http', 'job']);
  });

  it('a job added outside any request or context: the id Observe names its run, on both sides', async () => {
    const res = await fetch(`${app().url}/add/outside/outside`);
    const requestId = res.headers.get('x-request-id') as string;
    expect(((await res.json()) as Seen).addedIn).toEqual({ observe: null });

    const job = await seen(app(), 'job', 'outside');
    expect(job.correlationId).toMatch(DEFAULT_ID);
    expect(job.correlationId).not.toBe(requestId);
    expect(job.observe).toBe(job.correlationId);
    expectOneId(logLine(app(), 'job outside'), job.correlationId as string);
    const [snapshot] = await collector.waitFor(job.correlationId as string, 1);
    expect(snapshot?.n).toBe('job');
  });

  it("a job added in a context of ours outside any request: that context's id on both sides", async () => {
    const res = await fetch(`${app().url}/add/manual/manual`);
    const addedIn = ((await res.json()) as Seen).addedIn as { correlationId: string; observe: string | null };
    expect(addedIn.correlationId).toMatch(DEFAULT_ID);
    expect(addedIn.observe).toBeNull(); // Observe has no operation there: the library stamps its id for it

    expect(await seen(app(), 'job', 'manual')).toMatchObject({ correlationId: addedIn.correlationId, observe: addedIn.correlationId, stamped: addedIn.correlationId });
    expectOneId(logLine(app(), 'job manual'), addedIn.correlationId);
    await collector.waitFor(addedIn.correlationId, 1);
  });

  it.each(['interval', 'cron'])('@nestjs/schedule, an %s run: the id Observe names the run, on both sides', async (entry) => {
    for (const n of [1, 2]) {
      const run = await seen(app(), entry, `${entry}-${n}`);
      expect(run.correlationId).toMatch(DEFAULT_ID);
      expect(run.observe).toBe(run.correlationId);
      expectOneId(logLine(app(), `run ${entry}-${n}`), run.correlationId as string);
      const [snapshot] = await collector.waitFor(run.correlationId as string, 1);
      expect(snapshot?.q).toBe(entry);
    }
  });

  it('a gateway message (ContextWsModule): the id Observe names the message, on both sides', async () => {
    const answers = [await message(app().url, 'ws-1'), await message(app().url, 'ws-2')];
    for (const answer of answers) {
      await seen(app(), 'ws', answer.key); // the handler's lines are in (stdout and the socket race)
      expect(answer.correlationId).toMatch(DEFAULT_ID);
      expect(answer.observe).toBe(answer.correlationId);
      expectOneId(logLine(app(), `ws ${answer.key}`), answer.correlationId as string);
      const [snapshot] = await collector.waitFor(answer.correlationId as string, 1);
      expect(snapshot?.p).toBe('ws');
    }
    expect(answers[0]?.correlationId).not.toBe(answers[1]?.correlationId);
  });
});

// What remains, as docs/observe.md says: Observe has no trust policy for a job's stamp, and loses its
// operation for a gateway message whose pipeline has an interceptor (the library's global one) unless
// ContextWsModule runs the pipeline inside it.
describe('@nestjs/observe and nestjs-context: what remains (trustJobMetadata: false, no ContextWsModule)', () => {
  const { app } = runApp(['--no-jobs-trust']);

  it("a job added inside a request, its metadata not trusted: Observe runs it under the stamped id, the context under its own", async () => {
    const res = await fetch(`${app().url}/add/request/untrusted`);
    const id = res.headers.get('x-request-id') as string;
    const job = await seen(app(), 'job', 'untrusted');
    expect(job.observe).toBe(id);
    expect(job.correlationId).toMatch(DEFAULT_ID);
    expect(job.correlationId).not.toBe(id);
  });

  it('a job added outside any request: one id all the same (Observe minted it, nothing inbound)', async () => {
    await fetch(`${app().url}/add/outside/untrusted-outside`);
    const job = await seen(app(), 'job', 'untrusted-outside');
    expect(job.correlationId).toMatch(DEFAULT_ID);
    expect(job.observe).toBe(job.correlationId);
  });

  it("a gateway message without ContextWsModule: Observe's operation is lost before the handler, which has the library's id alone", async () => {
    const answer = await message(app().url, 'ws-plain');
    if (NEST_MAJOR >= 12) {
      expect(answer.correlationId).toMatch(DEFAULT_ID);
      expect(answer.observe).toBeNull();
    } else {
      // NestJS 11 applies no global interceptor to gateways: no context of ours, and with no
      // interceptor Observe keeps its operation (its own id alone).
      expect(answer.correlationId).toBeUndefined();
      expect(typeof answer.observe).toBe('string');
    }
  });
});
