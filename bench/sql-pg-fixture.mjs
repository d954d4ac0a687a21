// What bench/sql-pg-instructions.mjs and bench/sql-pg-cpu.mjs share: the library compiled by a bench
// run (.bench/build), pg, and one request record (an inbound id and traceparent) to run statements in.
// PostgreSQL on 127.0.0.1:5432, user postgres, database test; PGHOST/PGPORT/PGUSER/PGDATABASE override.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const build = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '.bench', 'build', 'src');

/** pg, `commentPg`, the library's storage, a request record, and the settings of a one-connection pool. */
export async function sqlPgFixture() {
  await import('reflect-metadata');
  const { default: pg } = await import('pg');
  const { ContextHost } = await import(path.join(build, 'runtime', 'context-host.js'));
  const { storage } = await import(path.join(build, 'record', 'context-record.js'));
  const { commentPg } = await import(path.join(build, 'integrations', 'sql', 'pg.js'));
  class Ctx {
    constructor(init) {
      this.correlationId = init.correlationId;
    }
  }
  const host = new ContextHost(Ctx, {});
  const headers = { 'x-request-id': 'b6a1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
  const record = host.forHttp({ headers }, { setHeader() {}, headersSent: false });
  const config = {
    host: process.env.PGHOST ?? '127.0.0.1',
    port: Number(process.env.PGPORT ?? 5432),
    user: process.env.PGUSER ?? 'postgres',
    database: process.env.PGDATABASE ?? 'test',
    max: 1,
  };
  return { pg, commentPg, storage, record, config };
}
