#!/usr/bin/env node
// Summarises V8 .cpuprofile files (from BENCH_CPU_PROF=1 npm run bench, or node --cpu-prof):
// self time per function and per package/file, as a share of the profile's non-idle samples.
//   node bench/profile-summary.mjs <file-or-dir.cpuprofile> [--top 30] [--filter nestjs-context]
// With two paths (A B), prints B − A per function in µs per request when --requests-a/--requests-b
// give each profile's request count (the server's `served` delta), otherwise in % of samples.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
/** Removes `--name value` from the arguments and returns the value, or `fallback`. */
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  if (i === -1) return fallback;
  const [, value] = args.splice(i, 2);
  return value;
};
const top = Number(opt('--top', 30));
const filter = opt('--filter', undefined);
const requestsA = Number(opt('--requests-a', NaN));
const requestsB = Number(opt('--requests-b', NaN));

/** Reads a .cpuprofile, or the newest one in a directory. */
function load(target) {
  const file = statSync(target).isDirectory()
    ? path.join(target, readdirSync(target).filter((f) => f.endsWith('.cpuprofile')).sort().pop())
    : target;
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** Self time (µs) per function key and per file bucket. */
function summarise(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const deltas = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    self.set(id, (self.get(id) ?? 0) + (deltas[i] ?? 0));
  }
  const fns = new Map();
  const files = new Map();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const { callFrame } = byId.get(id);
    const name = callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    const url = callFrame.url.replace(/^file:\/\//, '');
    const bucket = bucketOf(url, name);
    const key = `${name} ${url ? path.basename(url) + ':' + (callFrame.lineNumber + 1) : ''}`.trim();
    fns.set(key, (fns.get(key) ?? 0) + us);
    files.set(bucket, (files.get(bucket) ?? 0) + us);
  }
  return { fns, files, total, idle };
}

/** The package (or node: module, or part of this repo) a function's script belongs to. */
function bucketOf(url, name) {
  if (url === '') return name.startsWith('(') ? name : '(native / builtins)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 13).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.includes('/.bench/build/src/')) return 'nestjs-context (src)';
  if (url.includes('/.bench/build/bench/')) return 'bench harness';
  return path.basename(url);
}

/** Prints the `n` largest entries of `map` (by absolute value), scaled for display. */
function print(title, map, total, n, scale) {
  console.log(`\n${title}`);
  const rows = [...map].filter(([k]) => !filter || k.includes(filter)).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, n);
  for (const [k, us] of rows) console.log(`${scale(us).padStart(10)}  ${k}`);
  void total;
}

if (args.length === 1) {
  const s = summarise(load(args[0]));
  const pct = (us) => `${((100 * us) / s.total).toFixed(1)}%`;
  console.log(`busy ${(s.total / 1e6).toFixed(2)} s, idle ${(s.idle / 1e6).toFixed(2)} s`);
  print('self time by package/file', s.files, s.total, top, pct);
  print('self time by function', s.fns, s.total, top, pct);
} else if (args.length === 2) {
  const a = summarise(load(args[0]));
  const b = summarise(load(args[1]));
  const perRequest = Number.isFinite(requestsA) && Number.isFinite(requestsB);
  // B − A per key, per request when request counts are given, else in shares of the samples.
  const diff = (ma, mb) => {
    const out = new Map();
    for (const k of new Set([...ma.keys(), ...mb.keys()])) {
      out.set(k, perRequest ? (mb.get(k) ?? 0) / requestsB - (ma.get(k) ?? 0) / requestsA : (mb.get(k) ?? 0) / b.total - (ma.get(k) ?? 0) / a.total);
    }
    return out;
  };
  const scale = perRequest ? (x) => `${x >= 0 ? '+' : ''}${x.toFixed(2)} µs` : (x) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`;
  if (perRequest) console.log(`busy per request: A ${(a.total / requestsA).toFixed(1)} µs, B ${(b.total / requestsB).toFixed(1)} µs`);
  print('B − A by package/file', diff(a.files, b.files), 1, top, scale);
  print('B − A by function', diff(a.fns, b.fns), 1, top, scale);
} else {
  console.error('usage: node bench/profile-summary.mjs <profile|dir> [<profile|dir>] [--top N] [--filter text] [--requests-a N --requests-b N]');
  process.exit(2);
}
