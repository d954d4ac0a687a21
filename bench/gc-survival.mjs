#!/usr/bin/env node
// What survives the young generation's collections, per request, for one benchmark variant: starts
// its server (as bench/run.mjs does, the OTel preload for the otel-* variants) with
// --trace-gc-nvp --predictable --no-memory-reducer, sends 20,000 warm-up requests and then
// <requests> counted ones (16 at a time, the benchmark's inbound headers), and sums V8's own figures
// over the counted ones: scavenges, bytes allocated (V8's `allocated`, summed over every collection),
// bytes that survived a scavenge and bytes promoted.
//   node bench/gc-survival.mjs <variant> <express|fastify> [requests=20000] [V8 flags...]
// Run it with the Node to measure (e.g. `"$(bash scripts/node.sh 24)" bench/gc-survival.mjs ...`).
// Needs a previous `npm run bench` (or BENCH_… run) to have compiled .bench/build.
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [variant, platform = 'express', requestsArg = '20000', ...flags] = process.argv.slice(2);
if (variant === undefined) {
  console.error('usage: node bench/gc-survival.mjs <variant> <express|fastify> [requests] [V8 flags...]');
  process.exit(2);
}
const requests = Number(requestsArg);
const build = path.join(ROOT, '.bench', 'build', 'bench');
const args = ['--trace-gc-nvp', '--predictable', '--no-memory-reducer', ...flags];
if (variant.startsWith('otel-')) args.push('--import', path.join(build, 'otel.js'));
args.push(path.join(build, 'server.js'), variant, platform);
const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], env: { ...process.env, NODE_ENV: 'production' } });
let out = '';
child.stdout.on('data', (d) => (out += d));
const ready = await new Promise((resolve) => child.on('message', (m) => (m.type === 'ready' || m.type === 'error') && resolve(m)));
if (ready.type !== 'ready') throw new Error(`${variant}/${platform} failed to start: ${ready.message}`);

const headers = {
  'x-request-id': 'b6a1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d',
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  baggage: 'userId=alice,isProduction=false',
};
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const one = () =>
  new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: ready.port, path: '/', headers, agent }, (res) => res.resume().on('end', resolve)).on('error', reject);
  });
async function send(n) {
  for (let done = 0; done < n; done += 16) await Promise.all(Array.from({ length: Math.min(16, n - done) }, one));
}

await send(20_000);
const mark = out.length;
await send(requests);
await new Promise((resolve) => setTimeout(resolve, 300));
child.kill('SIGTERM');
agent.destroy();

let scavenges = 0;
let fullGcs = 0;
let survived = 0;
let promoted = 0;
let allocated = 0;
const field = (line, name) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(line)?.[1] ?? 0);
for (const line of out.slice(mark).split('\n')) {
  const kind = /\bgc=(\S+)/.exec(line)?.[1];
  if (kind === undefined) continue;
  allocated += field(line, 'allocated');
  if (kind !== 's') {
    fullGcs++;
    continue;
  }
  scavenges++;
  survived += field(line, 'new_space_survived');
  promoted += field(line, 'promoted');
}
const per = (bytes) => `${Math.round(bytes / requests)} B`;
console.log(
  `${variant} ${platform} (Node ${process.version}, ${requests} requests): ${scavenges} scavenges, ${fullGcs} full GCs; ` +
    `per request: ${per(allocated)} allocated, ${per(survived)} survived a scavenge, ${per(promoted)} promoted`,
);
