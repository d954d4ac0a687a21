// A loopback stand-in for @nestjs/observe's collector, shared by the Observe suites: nothing leaves
// the machine, and the suites read what Observe would have sent.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** One span of an operation's tree, as Observe encodes it: class (`c`), method (`m`), children (`ch`). */
export interface Span {
  c?: string;
  m?: string;
  ch?: Span[];
}

/**
 * One operation as Observe encodes it: its trace id (`ti`), span tree (`t`), and what it was — a
 * request's protocol (`p`: `http`, `TCP`, `ws`) or a job's queue (`q`: a BullMQ queue, or `cron`,
 * `interval`, `timeout` for `@nestjs/schedule`) and name (`n`).
 */
export interface Snapshot {
  ti?: string;
  t?: Span[];
  p?: string;
  q?: string;
  n?: string;
}

/** A loopback HTTP server that takes Observe's gzipped telemetry batches and keeps every operation snapshot. */
export class Collector {
  readonly snapshots: Snapshot[] = [];
  private readonly waiters: (() => void)[] = [];
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.receive(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private receive(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      try {
        const body = Buffer.concat(chunks);
        const json = req.headers['content-encoding'] === 'gzip' ? gunzipSync(body).toString('utf8') : body.toString('utf8');
        collectSnapshots(JSON.parse(json) as unknown, this.snapshots);
      } catch {
        // not a telemetry batch: ignored
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  /** Resolves with the snapshots carrying trace id `id` once at least `count` have arrived. */
  async waitFor(id: string, count: number): Promise<Snapshot[]> {
    for (;;) {
      const found = this.snapshots.filter((s) => s.ti === id);
      if (found.length >= count) return found;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Walks a telemetry batch for operation snapshots (objects with a `ti` trace id). */
function collectSnapshots(value: unknown, out: Snapshot[]): void {
  if (Array.isArray(value)) for (const item of value) collectSnapshots(item, out);
  else if (value !== null && typeof value === 'object') {
    if (typeof (value as Snapshot).ti === 'string') out.push(value as Snapshot);
    else for (const item of Object.values(value)) collectSnapshots(item, out);
  }
}

/** Every span class name in a snapshot's tree. */
export function spanClasses(snapshot: Snapshot): string[] {
  const out: string[] = [];
  const walk = (spans: Span[] | undefined): void => {
    for (const span of spans ?? []) {
      if (span.c !== undefined) out.push(span.c);
      walk(span.ch);
    }
  };
  walk(snapshot.t);
  return out;
}
