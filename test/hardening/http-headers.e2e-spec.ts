import 'reflect-metadata';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import fc from 'fast-check';
import { ContextModule, ContextService, isValidCorrelationId } from '../../src/index.js';
import { MyContext } from '../fixtures/app-context.js';
import { bootApp, platforms } from '../utils/platforms.js';

@Controller()
class ProbeController {
  constructor(private readonly context: ContextService<MyContext>) {}
  @Get('probe') probe() {
    const ctx = this.context.get();
    return { id: this.context.correlationId, same: ctx.correlationId === this.context.correlationId, trace: this.context.trace?.traceId };
  }
}

@Module({
  imports: [ContextModule.forRoot(MyContext, { baggage: { fields: ['userId'] } })],
  controllers: [ProbeController],
})
class ProbeModule {}

/** Header names the library reads, names that attack objects, and random tokens. */
const headerName = fc.oneof(
  fc.constantFrom('x-request-id', 'x-correlation-id', 'traceparent', 'tracestate', 'baggage'),
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString'),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/),
);

/** Header values as bytes on the wire: any latin1 text a client can put there (no CR, LF, NUL), up to 10 KB. */
const headerValue = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 200 }),
  fc.constantFrom('%', '%%', 'a, b', ',', '', ' ', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'k=v;p', '\t'),
  fc.integer({ min: 129, max: 10_000 }).map((n) => 'a'.repeat(n)),
);

const headerLines = fc.array(fc.tuple(headerName, headerValue), { maxLength: 12 });

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Writes a raw HTTP/1.1 request (headers as given, repeats included) and reads the whole response. */
function rawRequest(port: number, lines: readonly (readonly [string, string])[]): Promise<RawResponse> {
  const head = ['GET /probe HTTP/1.1', 'host: 127.0.0.1', 'connection: close', ...lines.map(([k, v]) => `${k}: ${v}`)].join('\r\n');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.end(Buffer.from(`${head}\r\n\r\n`, 'latin1')));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const [head = '', body = ''] = text.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const at = line.indexOf(':');
        headers[line.slice(0, at).toLowerCase()] = line.slice(at + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
    });
  });
}

describe.each(platforms)('hostile headers at the HTTP entry (%s): property-based', (_name, makeAdapter) => {
  let app: INestApplication;
  let port = 0;
  const problems: unknown[] = [];
  const statuses: Record<number, number> = {};
  const onProblem = (error: unknown): void => {
    problems.push(error);
  };
  const before = Object.getOwnPropertyNames(Object.prototype).sort();

  beforeAll(async () => {
    process.on('unhandledRejection', onProblem);
    process.on('uncaughtException', onProblem);
    app = await bootApp(ProbeModule, makeAdapter);
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
  });
  afterAll(async () => {
    await app.close();
    process.off('unhandledRejection', onProblem);
    process.off('uncaughtException', onProblem);
  });

  it('answers every request with a valid id, never echoes what came in invalid, pollutes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(headerLines, async (lines) => {
        const res = await rawRequest(port, lines);
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status === 400 || res.status === 431) return; // the HTTP parser refused the request itself
        expect(res.status).toBe(200);
        const id = res.headers['x-request-id'];
        expect(id !== undefined && isValidCorrelationId(id)).toBe(true);
        const body = JSON.parse(res.body) as { id: string; same: boolean; trace: string };
        expect(body.id).toBe(id);
        expect(body.same).toBe(true);
        expect(body.trace).toMatch(/^[0-9a-f]{32}$/);
        // An id that came in is echoed only if it was valid as sent (or a valid part of a joined value).
        const inbound = lines.filter(([k]) => k === 'x-request-id' || k === 'x-correlation-id').map(([, v]) => v);
        if (inbound.some((v) => v === id || v.split(',').some((part) => part.trim() === id))) expect(isValidCorrelationId(id as string)).toBe(true);
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      }),
      { numRuns: 150 },
    );
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(before);
    expect(problems).toEqual([]);
    expect(statuses[200] ?? 0).toBeGreaterThan(100); // most cases reached the app, not just the parser
  });
});
