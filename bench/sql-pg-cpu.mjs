// CPU time per statement that `commentPg` adds to a `pool.query('SELECT 1')` round trip on the real
// PostgreSQL, measured in one Node process with process.cpuUsage() (user + system, this process only;
// PostgreSQL's work is not counted). Two pools with the same settings (one connection each), one
// plain and one wrapped by `commentPg`, run rounds of N statements one after another inside one
// request context, in alternating order (ABBA…), after a warm-up; the figure is the median over the
// rounds of (commented − plain) per statement, beside each pool's median per statement. It gives the
// conversion from the instruction counts of bench/sql-pg-instructions.mjs to µs for this workload.
// Needs a bench build first (it reads the compiled sources in .bench/build) and PostgreSQL on
// 127.0.0.1:5432 (user postgres, database test; PGHOST/PGPORT/PGUSER/PGDATABASE override).
// SQL_CPU_CONTROL=1 makes the second pool plain too: the noise floor of the method.
// Usage: node bench/sql-pg-cpu.mjs [N per round] [rounds] [warm-up statements]
import { sqlPgFixture } from './sql-pg-fixture.mjs';

const n = Number(process.argv[2] ?? 5000);
const rounds = Number(process.argv[3] ?? 20);
const warm = Number(process.argv[4] ?? 20000);

const { pg, commentPg, storage, record, config } = await sqlPgFixture();
const pools = { plain: new pg.Pool(config), comment: process.env.SQL_CPU_CONTROL === '1' ? new pg.Pool(config) : commentPg(new pg.Pool(config)) };
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
/** µs of CPU per statement for `count` statements through `pool`. */
async function round(pool, count) {
  const before = process.cpuUsage();
  for (let i = 0; i < count; i++) await pool.query('SELECT 1');
  const used = process.cpuUsage(before);
  return (used.user + used.system) / count;
}
const check = await storage.run(record, () => pools.comment.query('SELECT current_query() AS q'));
if (process.env.SQL_CPU_CONTROL !== '1' && !/correlation_id='b6a1c2d3/.test(check.rows[0].q)) throw new Error(`the commented pool sent no comment: ${check.rows[0].q}`);
await storage.run(record, async () => {
  for (const pool of Object.values(pools)) await round(pool, warm);
  const per = { plain: [], comment: [] };
  const diffs = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['plain', 'comment'] : ['comment', 'plain'];
    const got = {};
    for (const name of order) got[name] = await round(pools[name], n);
    per.plain.push(got.plain);
    per.comment.push(got.comment);
    diffs.push(got.comment - got.plain);
  }
  const fmt = (x) => x.toFixed(2);
  console.log(`Node ${process.version}: ${rounds} rounds × ${n} statements per pool after ${warm} each (one connection per pool, one context)`);
  console.log(`plain:   ${fmt(median(per.plain))} µs CPU per SELECT 1 round trip (median of rounds; min ${fmt(Math.min(...per.plain))})`);
  console.log(`comment: ${fmt(median(per.comment))} µs CPU per SELECT 1 round trip (median of rounds; min ${fmt(Math.min(...per.comment))})`);
  console.log(`commentPg adds ${fmt(median(diffs))} µs CPU per statement (median of the rounds' differences; quartiles ${fmt(median(diffs.filter((d) => d <= median(diffs))))} … ${fmt(median(diffs.filter((d) => d >= median(diffs))))})`);
});
await Promise.all(Object.values(pools).map((pool) => pool.end()));
