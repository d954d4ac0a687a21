// Instructions per generated correlation id: the default generator (UUIDv7, `generateCorrelationId`)
// against `crypto.randomUUID()` (UUIDv4, the former default). See BENCHMARKS.md.
//
// Each generator runs in a fresh Node under valgrind's callgrind with V8 in predictable mode, once
// with SHORT calls and once with LONG calls; (count(LONG) − count(SHORT)) ÷ (LONG − SHORT) is the
// steady-state cost of one call — start-up, module loading and most of V8's warm-up cancel out.
// Needs the compiled benchmark build (`node bench/run.mjs --micro-only` makes it) and valgrind.
//
//   node bench/id-instructions.mjs
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SHORT = 200_000;
const LONG = 1_200_000;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LIB = path.join(ROOT, '.bench', 'build', 'src', 'propagation', 'correlation-id.js');

if (process.argv[2] === 'child') {
  // The measured process: `calls` calls of one generator, results kept so nothing is optimised away.
  const [, , , which, calls] = process.argv;
  const generate =
    which === 'v7' ? (await import(pathToFileURL(LIB).href)).generateCorrelationId : (await import('node:crypto')).randomUUID;
  const sink = new Array(16);
  for (let i = 0; i < Number(calls); i++) sink[i & 15] = generate();
  if (sink.length !== 16) process.exit(1);
} else {
  if (!existsSync(LIB)) throw new Error(`${LIB} is missing: run \`node bench/run.mjs --micro-only\` first to compile the benchmark build`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'id-instr-'));
  /** Instructions callgrind counted for one child run. */
  const count = (which, calls) => {
    const out = spawnSync(
      'valgrind',
      ['--tool=callgrind', `--callgrind-out-file=${path.join(dir, `${which}-${calls}.out`)}`, process.execPath, '--predictable', fileURLToPath(import.meta.url), 'child', which, String(calls)],
      { encoding: 'utf8' },
    );
    const match = /Collected\s*:\s*(\d+)/.exec(out.stderr);
    if (out.status !== 0 || !match) throw new Error(`callgrind failed: ${out.stderr.slice(-800)}`);
    return Number(match[1]);
  };
  const rows = [];
  for (const [which, name] of [['v7', 'generateCorrelationId() (UUIDv7)'], ['v4', 'crypto.randomUUID() (UUIDv4)']]) {
    rows.push([name, (count(which, LONG) - count(which, SHORT)) / (LONG - SHORT)]);
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(`Node ${process.version}, instructions per call (callgrind, --predictable, ${LONG} − ${SHORT} calls)`);
  for (const [name, n] of rows) console.log(`  ${name.padEnd(40)} ${n.toFixed(1)}`);
}
