// Instructions per statement that `commentPg` adds to a `pool.query('SELECT 1')` round trip on the
// real PostgreSQL, counted by callgrind in this process only (the server's work is not counted).
// Statements run one after another inside one request context, so a statement costs the same
// event-loop turns with and without the comment; each variant (plain pool, commented pool) runs
// with W statements of warm-up and then with W + N, and the difference is divided by N. Needs a
// bench run first (it reads the compiled sources in .bench/build) and PostgreSQL on 127.0.0.1:5432
// (user postgres, database test; PGHOST/PGPORT/PGUSER/PGDATABASE override).
// Usage: node bench/sql-pg-instructions.mjs [node binary] [N] [W]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sqlPgFixture } from './sql-pg-fixture.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

if (process.argv[2] === '--child') {
  const [, , , variant, count] = process.argv;
  const { pg, commentPg, storage, record, config } = await sqlPgFixture();
  const plain = new pg.Pool(config);
  const pool = variant === 'comment' ? commentPg(plain) : plain;
  await pool.query('SELECT 1'); // the connection, opened outside the counted statements
  await storage.run(record, async () => {
    for (let i = 0; i < Number(count); i++) await pool.query('SELECT 1');
  });
  await pool.end();
} else {
  const node = process.argv[2] ?? process.execPath;
  const n = Number(process.argv[3] ?? 4000);
  const warm = Number(process.argv[4] ?? 6000);
  const count = (variant, statements) =>
    new Promise((resolve, reject) => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'sql-pg-callgrind-'));
      const out = path.join(dir, 'callgrind.out');
      const args = ['--tool=callgrind', `--callgrind-out-file=${out}`, node, '--predictable', '--single-threaded', '--random-seed=1', '--hash-seed=1'];
      const child = spawn('valgrind', [...args, fileURLToPath(import.meta.url), '--child', variant, String(statements)], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => (err = (err + d).slice(-1200)));
      child.once('exit', (code) => {
        try {
          if (code !== 0) throw new Error(`callgrind failed (${code}): ${err}`);
          const file = readdirSync(dir).find((f) => f.startsWith('callgrind.out'));
          resolve(Number(/^summary:\s+(\d+)/m.exec(readFileSync(path.join(dir, file), 'utf8'))[1]));
        } catch (error) {
          reject(error);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    });
  const perStatement = {};
  for (const variant of ['plain', 'comment']) {
    const [base, full] = await Promise.all([count(variant, warm), count(variant, warm + n)]);
    perStatement[variant] = (full - base) / n;
    console.log(`${variant}: ${Math.round(perStatement[variant])} instructions per SELECT 1 round trip (N=${n} after ${warm})`);
  }
  console.log(`commentPg adds ${Math.round(perStatement.comment - perStatement.plain)} instructions per statement`);
}
