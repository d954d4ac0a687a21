// Instruction counts per request, the deterministic half of `npm run bench` (see BENCHMARKS.md).
//
// Each variant's server runs under valgrind's callgrind with V8 in predictable mode (no concurrent
// compiler or GC threads, fixed seeds). It is warmed up with `warm` requests, then callgrind counts
// every instruction the process executes (JIT code, V8 runtime, GC, libuv; the kernel excluded)
// while it serves `measure` more, in batches of 16 concurrent keep-alive requests carrying the
// benchmark's inbound headers. V8 is still optimising code thousands of requests in, so the
// compilers' own instructions in the window are taken out (and reported): what remains is the
// steady-state cost per request. The same run repeated gives the same count to about 0.05 %, and
// the count does not move when the host is busy, which wall-clock CPU time here does by tens of
// percent. Runs go `parallel` at a time: counts do not depend on timing.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const BATCH = 16;

/** Why instruction counting cannot run here, or undefined when valgrind and callgrind_control are present. */
export function instructionsUnavailable() {
  for (const tool of ['valgrind', 'callgrind_control']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      return `${tool} is not installed (Debian/Ubuntu: apt-get install -y valgrind)`;
    }
  }
  return undefined;
}

/** Sends `count` GET / requests in batches of 16 concurrent keep-alive requests. */
async function drive(port, headers, count) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: BATCH });
  // Under valgrind a batch can outlast the server's keep-alive timeout (when instrumentation starts,
  // valgrind re-translates everything): a request on a socket the server just closed is sent again.
  // The server's own count of served requests is the divisor, so a retry never skews the figure.
  const one = async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await once();
      } catch (error) {
        if (attempt === 3 || !['ECONNRESET', 'EPIPE'].includes(error?.code)) throw error;
      }
    }
  };
  const once = () =>
    new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', headers, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      });
      req.setTimeout(60_000, () => req.destroy(new Error('no answer in 60 s')));
      req.on('error', reject);
    });
  let bad = 0;
  try {
    for (let sent = 0; sent < count; sent += BATCH) {
      const statuses = await Promise.all(Array.from({ length: Math.min(BATCH, count - sent) }, one));
      bad += statuses.filter((s) => s !== 200).length;
    }
  } finally {
    agent.destroy();
  }
  return bad;
}

/** Runs `callgrind_control <args> <pid>` and fails loudly if it could not reach the process. */
function control(args, pid) {
  const r = spawnSync('callgrind_control', [...args, String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`callgrind_control ${args.join(' ')} ${pid} failed: ${r.stderr || r.stdout}`);
}

/**
 * V8's compilers, by the functions that enter them: optimising (Maglev, Turbofan; synchronous on the
 * main thread in predictable mode), lazy bytecode and baseline compilation. Their inclusive counts
 * are one-off warm-up work that a long-running server has behind it.
 */
const COMPILERS = ['v8::internal::Compiler::CompileOptimized(', 'v8::internal::Compiler::Compile(', 'v8::internal::Compiler::CompileBaseline('];

/**
 * The dump written by `callgrind_control -d`: its total instruction count, and how much of it V8
 * spent compiling (inclusive counts of {@link COMPILERS}, from callgrind_annotate).
 */
async function readDump(dir, deadline) {
  for (;;) {
    const file = readdirSync(dir).find((f) => /\.out\.\d+$/.test(f));
    if (file !== undefined) {
      const text = readFileSync(path.join(dir, file), 'utf8');
      const m = text.match(/^(?:summary|totals):\s*(\d+)/m);
      if (m) {
        const annotated = spawnSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', path.join(dir, file)], { encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
        if (annotated.status !== 0) throw new Error(`callgrind_annotate failed: ${annotated.stderr}`);
        let compiling = 0;
        for (const name of COMPILERS) {
          // The largest inclusive count among the function's overloads: they call one another.
          let most = 0;
          for (const line of annotated.stdout.split('\n')) {
            const c = line.match(/^\s*([\d,]+) \(/);
            if (c && line.includes(name)) most = Math.max(most, Number(c[1].replaceAll(',', '')));
          }
          compiling += most;
        }
        return { total: Number(m[1]), compiling };
      }
    }
    if (Date.now() > deadline) throw new Error('callgrind wrote no dump in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Counts one variant: resolves { perRequest, served, bad } or rejects with what went wrong. The
 * server is always stopped.
 */
async function countOne({ node, server, variant, platform, headers, warm, measure, track, core }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-cg-'));
  const args = [
    '--tool=callgrind',
    '--instr-atstart=no',
    `--callgrind-out-file=${path.join(dir, 'cg.out')}`,
    node,
    '--predictable',
    // No --expose-gc: the memory marks' forced "last resort" collection at the 20,000th request
    // (bench/probe.ts) would shrink the heap and flush code in the middle of the warm-up.
    server,
    variant,
    platform,
  ];
  // Each worker gets a core of its own (the harness itself is pinned to one, and children inherit it).
  const [command, argv] = core === undefined ? ['valgrind', args] : ['taskset', ['-c', String(core), 'valgrind', ...args]];
  const child = track(spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: { ...process.env, NODE_ENV: 'production' } }));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-3000)));
  const pending = new Map();
  let nextId = 1;
  const ask = (type) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => reject(new Error(`${variant}/${platform}: no answer to ${type}`)), 60_000);
      pending.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      child.send({ type, id });
    });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${variant}/${platform}: not ready in 5 min under valgrind\n${stderr}`)), 300_000);
      child.on('message', (m) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve(m.port);
        } else if (m.type === 'error') {
          clearTimeout(timer);
          reject(new Error(`${variant}/${platform} failed to start:\n${m.message}`));
        } else if (pending.has(m.id)) {
          pending.get(m.id)(m);
          pending.delete(m.id);
        }
      });
      child.once('exit', (code) => reject(new Error(`${variant}/${platform} exited (${code}) under valgrind\n${stderr}`)));
    });
    let bad = await drive(port, headers, warm);
    const before = await ask('stats');
    control(['-i', 'on'], child.pid);
    bad += await drive(port, headers, measure);
    const after = await ask('stats');
    control(['-d'], child.pid);
    const { total, compiling } = await readDump(dir, Date.now() + 60_000);
    const served = after.served - before.served;
    // Steady state: what is left once V8's one-off compilation in the window is taken out.
    return { perRequest: (total - compiling) / served, withCompiling: total / served, served, bad };
  } finally {
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Counts instructions per request for every platform × variant, `parallel` servers at a time
 * (worker i pinned to `cores[i]` when given).
 * Returns { counts: { 'platform/variant': { perRequest, served, bad } }, errors: [text], warm, measure }.
 */
export async function countInstructions({ node, server, variants, platforms, headers, warm, measure, parallel, cores, track, log, deadline }) {
  if (!existsSync(server)) throw new Error(`no server build at ${server}`);
  const jobs = platforms.flatMap((platform) => variants.map((variant) => ({ platform, variant })));
  const counts = {};
  const errors = [];
  let skipped = 0;
  const worker = async (core) => {
    for (let job = jobs.shift(); job !== undefined; job = jobs.shift()) {
      if (Date.now() > deadline) {
        skipped++;
        continue;
      }
      const key = `${job.platform}/${job.variant}`;
      try {
        counts[key] = await countOne({ node, server, ...job, headers, warm, measure, track, core });
        log(`bench: instructions ${key}: ${Math.round(counts[key].perRequest).toLocaleString('en-US')} per request`);
      } catch (error) {
        errors.push(`${key}: ${error?.message ?? error}`);
        log(`bench: instructions ${key} FAILED: ${error?.message ?? error}`);
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, (_, i) => worker(cores?.[i])));
  if (skipped > 0) errors.push(`time budget reached: ${skipped} variants not counted`);
  return { counts, errors, warm, measure };
}
