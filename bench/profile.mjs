#!/usr/bin/env node
// Profiles one benchmark variant: starts its server with --cpu-prof (pinned like the benchmark),
// drives it with wrk, stops it and prints where the time went (bench/profile-summary.mjs).
//   node bench/profile.mjs <variant> <express|fastify> [seconds=10] [node=24|20]
//   node bench/profile.mjs --diff <variantA> <variantB> <express|fastify> [seconds] [node]
// Needs a previous `npm run bench` (or BENCH_MICRO… run) to have compiled .bench/build.
// Profiles are written under .bench/profiles/manual-<node>-<platform>-<variant>/.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HEADERS = {
  'x-request-id': 'b6a1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d',
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  baggage: 'userId=alice,isProduction=false',
};

const args = process.argv.slice(2);
const diff = args[0] === '--diff';
if (diff) args.shift();
const variants = diff ? args.splice(0, 2) : args.splice(0, 1);
const [platform = 'express', seconds = '10', nodeLabel = '24'] = args;
const bin = nodeLabel === '24' ? execFileSync('bash', [path.join(ROOT, 'scripts', 'node24.sh')], { encoding: 'utf8' }).trim() : process.execPath;

/** Profiles one variant: server with --cpu-prof, 3 s warm-up, `seconds` of load; returns the profile dir and request count. */
async function profile(variant) {
  const dir = path.join(ROOT, '.bench', 'profiles', `manual-node${nodeLabel}-${platform}-${variant}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  // The OTel variants start the SDK first, as in bench/run.mjs.
  const preload = variant.startsWith('otel-') ? ['--import', pathToFileURL(path.join(ROOT, '.bench/build/bench/otel.js')).href] : [];
  const child = spawn('taskset', ['-c', '0', bin, '--cpu-prof', `--cpu-prof-dir=${dir}`, ...preload, path.join(ROOT, '.bench/build/bench/server.js'), variant, platform], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  // The server's next IPC message.
  const next = () => new Promise((resolve) => child.once('message', resolve));
  const ready = await next();
  if (ready.type !== 'ready') throw new Error(ready.message);
  const h = Object.entries(HEADERS).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  const url = `http://127.0.0.1:${ready.port}/`;
  spawnSync('taskset', ['-c', '1', 'wrk', '-t1', '-c32', '-d3s', ...h, url]); // warm-up, not profiled apart
  child.send({ type: 'stats', id: 1 });
  const before = await next();
  const out = spawnSync('taskset', ['-c', '1', 'wrk', '-t1', '-c32', `-d${seconds}s`, ...h, url], { encoding: 'utf8' });
  child.send({ type: 'stats', id: 2 });
  const after = await next();
  child.send({ type: 'stop' });
  await new Promise((resolve) => child.once('exit', resolve));
  const served = after.served;
  const cpu = (after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / (after.served - before.served);
  console.log(`${variant}/${platform} on Node ${nodeLabel}: ${/Requests\/sec:\s+\S+/.exec(out.stdout)?.[0]}, ${cpu.toFixed(1)} µs CPU/request (profiled, inflated); ${served} requests in the profile`);
  return { dir, served };
}

const results = [];
for (const v of variants) results.push(await profile(v));
const summary = path.join(ROOT, 'bench', 'profile-summary.mjs');
const extra = diff ? [results[0].dir, results[1].dir, '--requests-a', String(results[0].served), '--requests-b', String(results[1].served)] : [results[0].dir];
spawnSync(process.execPath, [summary, ...extra, '--top', '25'], { stdio: 'inherit' });
