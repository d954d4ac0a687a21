// Instructions per outgoing call: what `getOutboundHeaders()` costs the first time a request calls
// it (as `ctx-full-out` does once per request; the trace is already read, as in `ctx-full`), inside
// a record entered from the benchmark's inbound headers (x-request-id, traceparent, baggage).
// See BENCHMARKS.md, "Outgoing headers".
//
// A fresh Node under valgrind's callgrind with V8 in predictable mode serves WARM requests with one
// outgoing call each, then MEASURED requests with none (first run) or one (second run); the
// difference of the two counts ÷ MEASURED is the cost of the call — start-up, the app, the records
// and V8's warm-up cancel out. Needs the compiled package (`npm run build`) and valgrind.
//
//   node bench/outbound-instructions.mjs [package root, default: this checkout]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const WARM = 20_000;
const MEASURED = 20_000;
const HEADERS = {
  'x-request-id': 'b6a1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d',
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  baggage: 'userId=alice,isProduction=false',
};

if (process.argv[2] === 'child') {
  const [, , , root, calls] = process.argv;
  const load = (file) => import(pathToFileURL(path.join(root, file)).href);
  await load('node_modules/reflect-metadata/Reflect.js');
  const { Module } = await load('node_modules/@nestjs/common/index.js');
  const { NestFactory } = await load('node_modules/@nestjs/core/index.js');
  const lib = await load('dist/esm/index.js');
  const { ContextHost } = await load('dist/esm/runtime/context-host.js');
  const { storage } = await load('dist/esm/record/context-record.js');
  class BenchContext {
    constructor(init) {
      this.correlationId = init.correlationId;
    }
  }
  class AppModule {}
  Module({ imports: [lib.ContextModule.forRoot(BenchContext, { correlationId: { requestHeaders: ['x-request-id', 'x-correlation-id'] } })] })(AppModule);
  const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  const host = app.get(ContextHost);
  let sink = 0;
  /** One request: its record, its trace read, then `n` outgoing calls. */
  const request = (n) => {
    const record = host.fromCarrier(HEADERS, 'http');
    storage.run(record, () => {
      sink += record.trace.traceId.length;
      for (let c = 0; c < n; c++) sink += Object.keys(lib.getOutboundHeaders()).length;
    });
  };
  for (let i = 0; i < WARM; i++) request(1);
  for (let i = 0; i < MEASURED; i++) request(Number(calls));
  await app.close();
  if (sink === 0) process.exit(1);
} else {
  const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'outbound-instr-'));
  const count = (calls) => {
    const out = spawnSync(
      'valgrind',
      ['--tool=callgrind', `--callgrind-out-file=${path.join(dir, `${calls}.out`)}`, process.execPath, '--predictable', fileURLToPath(import.meta.url), 'child', root, String(calls)],
      { encoding: 'utf8' },
    );
    const match = /Collected\s*:\s*(\d+)/.exec(out.stderr);
    if (out.status !== 0 || !match) throw new Error(`callgrind failed: ${out.stderr.slice(-800)}`);
    return Number(match[1]);
  };
  try {
    const none = count(0);
    const one = count(1);
    console.log(`${process.version} ${root}: ${Math.round((one - none) / MEASURED).toLocaleString('en-US')} instructions per outgoing call (first of its request)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
