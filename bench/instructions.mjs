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
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Why instruction counting cannot run here, or undefined when valgrind and callgrind_control are present. */
export function instructionsUnavailable() {
  for (const tool of ['valgrind', 'callgrind_control']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      return `${tool} is not installed (Debian/Ubuntu: apt-get install -y valgrind)`;
    }
  }
  return undefined;
}

/**
 * Starts the load of one count: a client process on the server's own core (`core`) that sends
 * `warm` requests in batches of 16 concurrent keep-alive requests, then, when `go()` is called,
 * `count` more on the same connections. On the server's core the client writes a whole batch
 * before the server gets the core back, so the server reads every batch in one event-loop turn, as
 * a saturated server under wrk does (a client on another core feeds it requests one by one, and
 * every turn of the event loop costs tens of thousands of instructions). The same connections
 * throughout, as behind a gateway that pools them. `warmed` resolves when the warm-up is done;
 * `done` resolves { bad: non-200 answers, retries: counted requests sent again }.
 */
function load(port, headers, warm, count, core, track) {
  const driver = fileURLToPath(new URL('./instructions-driver.mjs', import.meta.url));
  const args = [driver, String(port), String(warm), String(count), JSON.stringify(headers)];
  const [command, argv] = core === undefined ? [process.execPath, args] : ['taskset', ['-c', String(core), process.execPath, ...args]];
  const child = track(spawn(command, argv, { stdio: ['pipe', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  let onWarm;
  const warmed = new Promise((resolve) => (onWarm = resolve));
  child.stdout.on('data', (d) => {
    out += d;
    if (out.startsWith('warm\n')) onWarm();
  });
  child.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
  child.stdin.on('error', () => undefined); // a driver that already died: `done` reports it
  const done = new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      const [bad, retries] = out.slice('warm\n'.length).trim().split(' ').map(Number);
      if (code === 0) resolve({ bad, retries });
      else reject(new Error(`load driver failed (${code}): ${err}`));
    });
  });
  // A driver that dies during the warm-up must not leave the caller waiting for `warmed`.
  done.catch(() => undefined).finally(onWarm);
  return { warmed, done, go: () => child.stdin.end('go\n') };
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
 * V8's full (mark-compact) collector. Counted in, but reported: one such collection in the window
 * adds its whole cost to a few thousand requests, so a count whose window holds one (or holds one
 * where another count's does not) cannot be compared with it.
 */
const MAJOR_GC = 'v8::internal::MarkCompactCollector::CollectGarbage(';
/** V8's young-generation collector (scavenges), reported the same way: a few per window on a server whose requests leave objects alive. */
const MINOR_GC = 'v8::internal::ScavengerCollector::CollectGarbage(';

/**
 * The dump written by `callgrind_control -d`: its total instruction count, how much of it V8 spent
 * compiling (inclusive counts of {@link COMPILERS}, from callgrind_annotate) and in full
 * collections ({@link MAJOR_GC}) and scavenges ({@link MINOR_GC}).
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
        const lines = annotated.stdout.split('\n');
        // The largest inclusive count among the function's overloads: they call one another.
        const inclusive = (name) => {
          let most = 0;
          for (const line of lines) {
            const c = line.match(/^\s*([\d,]+) \(/);
            if (c && line.includes(name)) most = Math.max(most, Number(c[1].replaceAll(',', '')));
          }
          return most;
        };
        let compiling = 0;
        for (const name of COMPILERS) compiling += inclusive(name);
        return { total: Number(m[1]), compiling, majorGc: inclusive(MAJOR_GC), minorGc: inclusive(MINOR_GC) };
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
async function countOne({ node, flags, nodeArgs, server, variant, platform, headers, warm, measure, track, core }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-cg-'));
  const args = [
    '--tool=callgrind',
    '--instr-atstart=no',
    `--callgrind-out-file=${path.join(dir, 'cg.out')}`,
    node,
    '--predictable',
    // Extra flags for every counted server (BENCH_INSTR_FLAGS), e.g. --no-memory-reducer.
    ...(flags ?? []),
    // A preload the variant needs (the OpenTelemetry SDK of the otel-* variants).
    ...(nodeArgs?.(variant) ?? []),
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
        }
      });
      child.once('exit', (code) => reject(new Error(`${variant}/${platform} exited (${code}) under valgrind\n${stderr}`)));
    });
    // No IPC request to the server from here on: a server that has answered one executes about a
    // fifth more instructions per request for a long while after (V8 keeps recompiling), so the
    // divisor is the requests the client had answered, not the server's own count.
    const client = load(port, headers, warm, measure, core, track);
    await client.warmed;
    control(['-i', 'on'], child.pid);
    client.go();
    const { bad, retries } = await client.done;
    control(['-d'], child.pid);
    const { total, compiling, majorGc, minorGc } = await readDump(dir, Date.now() + 60_000);
    if (retries > 0) throw new Error(`${retries} counted requests had to be sent again (server closed idle connections): the count would be off`);
    // Steady state: what is left once V8's one-off compilation in the window is taken out.
    return { perRequest: (total - compiling) / measure, withCompiling: total / measure, majorGc: majorGc / measure, minorGc: minorGc / measure, served: measure, bad };
  } finally {
    child.kill('SIGKILL');
    await exited;
    // BENCH_KEEP_DUMPS=<dir>: the dump is kept there (as <variant>-<platform>.out) for callgrind_annotate.
    const keep = process.env.BENCH_KEEP_DUMPS;
    const dump = keep === undefined || keep === '' ? undefined : readdirSync(dir).find((f) => /\.out\.\d+$/.test(f));
    if (dump !== undefined) {
      mkdirSync(keep, { recursive: true });
      renameSync(path.join(dir, dump), path.join(keep, `${variant}-${platform}.out`));
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Counts instructions per request for every platform × variant, `parallel` servers at a time
 * (worker i pinned to `cores[i]` when given). `flags`: Node/V8 flags for every server (optional);
 * `nodeArgs(variant)`: Node flags a variant's server needs (optional).
 * Returns { counts: { 'platform/variant': { perRequest, served, bad } }, errors: [text], warm, measure }.
 */
export async function countInstructions({ node, flags, nodeArgs, server, variants, platforms, headers, warm, measure, parallel, cores, track, log, deadline }) {
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
        counts[key] = await countOne({ node, flags, nodeArgs, server, ...job, headers, warm, measure, track, core });
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
