// Instructions per statement of the SQL comment (nestjs-context/sql), counted by callgrind: the
// same script runs with N statements and with none (after the same warm-up), and the difference is
// divided by N. Needs `node bench/run.mjs --micro-only` (or any bench run) first: it reads the
// compiled sources in .bench/build. Usage: node bench/sql-instructions.mjs [node binary] [N]
import { spawnSync } from 'node:child_process';
import { readFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const build = path.join(root, '.bench', 'build', 'src');

if (process.argv[2] === '--child') {
  const [, , , variant, count] = process.argv;
  await import('reflect-metadata');
  const { ContextHost } = await import(path.join(build, 'runtime', 'context-host.js'));
  const { storage } = await import(path.join(build, 'record', 'context-record.js'));
  const { SqlCommenter } = await import(path.join(build, 'integrations', 'sql', 'comment.js'));
  class Ctx {
    constructor(init) {
      this.correlationId = init.correlationId;
      this.tenant = 'acme';
      this.route = '/orders/:id';
    }
  }
  const host = new ContextHost(Ctx, {});
  const headers = { 'x-request-id': 'b6a1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
  const record = host.forHttp({ headers }, { setHeader() {}, headersSent: false });
  const commenter = new SqlCommenter(variant === 'fields' ? { fields: ['tenant', 'route'] } : variant === 'stable' ? { traceparent: false } : {});
  const statement = 'SELECT id, total FROM orders WHERE customer_id = $1';
  let sink = 0;
  storage.run(record, () => {
    for (let i = 0; i < 300_000; i++) sink += commenter.apply(statement).length; // warm-up: optimised code
    for (let i = 0; i < Number(count); i++) sink += commenter.apply(statement).length;
  });
  if (sink === 0) console.log('unreachable');
} else {
  const node = process.argv[2] ?? process.execPath;
  const n = Number(process.argv[3] ?? 200_000);
  const count = (variant, statements) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sql-callgrind-'));
    const out = path.join(dir, 'callgrind.out');
    const run = spawnSync(
      'valgrind',
      ['--tool=callgrind', `--callgrind-out-file=${out}`, node, '--predictable', '--single-threaded', '--random-seed=1', '--hash-seed=1', fileURLToPath(import.meta.url), '--child', variant, String(statements)],
      { encoding: 'utf8', cwd: root },
    );
    if (run.status !== 0) throw new Error(`callgrind failed: ${run.stderr.slice(-600)}`);
    const file = readdirSync(dir).find((f) => f.startsWith('callgrind.out'));
    const summary = /^summary:\s+(\d+)/m.exec(readFileSync(path.join(dir, file), 'utf8'));
    rmSync(dir, { recursive: true, force: true });
    return Number(summary[1]);
  };
  for (const variant of ['default', 'fields', 'stable']) {
    const base = count(variant, 0);
    const full = count(variant, n);
    console.log(`${variant}: ${Math.round((full - base) / n)} instructions per statement (N=${n})`);
  }
}
