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
// SQL_PG_SERVER=stub runs both pools against an in-process stand-in for PostgreSQL (bench/
// sql-pg-fixture.mjs): no socket and no kernel time, so what the comment adds to the Node process is
// measured without the round trip's system-call noise (the comment changes nothing in the kernel but
// the length of one write).
// Usage: node bench/sql-pg-cpu.mjs [N per round] [rounds] [warm-up statements]
import { sqlPgFixture } from './sql-pg-fixture.mjs';

const n = Number(process.argv[2] ?? 5000);
const rounds = Number(process.argv[3] ?? 20);
const warm = Number(process.argv[4] ?? 20000);

const { pg, commentPg, storage, record, config, stub } = await sqlPgFixture();
const pools = { plain: new pg.Pool(config), comment: process.env.SQL_CPU_CONTROL === '1' ? new pg.Pool(config) : commentPg(new pg.Pool(config)) };
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
/** µs of CPU (user + system, and user alone) per statement for `count` statements through `pool`. */
async function round(pool, count) {
  const before = process.cpuUsage();
  for (let i = 0; i < count; i++) await pool.query('SELECT 1');
  const used = process.cpuUsage(before);
  return { total: (used.user + used.system) / count, user: used.user / count };
}
let sent;
if (stub) {
  await storage.run(record, () => pools.comment.query('SELECT 1'));
  sent = stub.lastQuery();
} else {
  sent = (await storage.run(record, () => pools.comment.query('SELECT current_query() AS q'))).rows[0].q;
}
if (process.env.SQL_CPU_CONTROL !== '1' && !/correlation_id='b6a1c2d3/.test(sent)) throw new Error(`the commented pool sent no comment: ${sent}`);
await storage.run(record, async () => {
  for (const pool of Object.values(pools)) await round(pool, warm);
  const per = { plain: { total: [], user: [] }, comment: { total: [], user: [] } };
  const diffs = { total: [], user: [] };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['plain', 'comment'] : ['comment', 'plain'];
    const got = {};
    for (const name of order) got[name] = await round(pools[name], n);
    for (const kind of ['total', 'user']) {
      per.plain[kind].push(got.plain[kind]);
      per.comment[kind].push(got.comment[kind]);
      diffs[kind].push(got.comment[kind] - got.plain[kind]);
    }
  }
  const fmt = (x) => x.toFixed(2);
  const quartiles = (xs) => `${fmt(median(xs.filter((d) => d <= median(xs))))} … ${fmt(median(xs.filter((d) => d >= median(xs))))}`;
  console.log(`Node ${process.version}: ${rounds} rounds × ${n} statements per pool after ${warm} each (one connection per pool, one context, ${stub ? 'in-process PostgreSQL stand-in' : `PostgreSQL on ${config.host}:${config.port}`})`);
  for (const kind of ['total', 'user']) {
    const what = kind === 'total' ? 'CPU (user + system)' : 'user CPU';
    console.log(`${what}:`);
    console.log(`  plain:   ${fmt(median(per.plain[kind]))} µs per SELECT 1 round trip (median of rounds; min ${fmt(Math.min(...per.plain[kind]))})`);
    console.log(`  comment: ${fmt(median(per.comment[kind]))} µs per SELECT 1 round trip (median of rounds; min ${fmt(Math.min(...per.comment[kind]))})`);
    console.log(`  commentPg adds ${fmt(median(diffs[kind]))} µs per statement (median of the rounds' differences; quartiles ${quartiles(diffs[kind])})`);
  }
});
await Promise.all(Object.values(pools).map((pool) => pool.end()));
