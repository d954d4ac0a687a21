// What bench/sql-pg-instructions.mjs and bench/sql-pg-cpu.mjs share: the library compiled by a bench
// run (.bench/build), pg, and one request record (an inbound id and traceparent) to run statements in.
// PostgreSQL on 127.0.0.1:5432, user postgres, database test; PGHOST/PGPORT/PGUSER/PGDATABASE override.
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
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
  // SQL_PG_SERVER=stub: pg talks to the in-process stand-in below instead of PostgreSQL.
  let stub;
  if (process.env.SQL_PG_SERVER === 'stub') {
    stub = stubPostgres();
    config.stream = () => new stub();
  }
  return { pg, commentPg, storage, record, config, stub };
}

/**
 * An in-process PostgreSQL stand-in for pg's `stream` option: it answers the startup message with
 * AuthenticationOk and ReadyForQuery, and every simple query (`Q`) with the result of `SELECT 1`
 * (RowDescription, DataRow, CommandComplete, ReadyForQuery) on the next turn of the event loop, as a
 * socket would. No system call and no server work: what a statement costs the Node process beyond
 * the round trip's kernel time, so the comment's few µs are not lost in the kernel's noise.
 */
export function stubPostgres() {
  const message = (type, body) => {
    const out = Buffer.alloc(5 + body.length);
    out.write(type, 0, 'latin1');
    out.writeInt32BE(4 + body.length, 1);
    body.copy(out, 5);
    return out;
  };
  const int32 = (n) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
  const int16 = (n) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
  const ready = message('Z', Buffer.from('I'));
  const hello = Buffer.concat([message('R', int32(0)), ready]);
  const field = Buffer.concat([Buffer.from('?column?\0'), int32(0), int16(0), int32(23), int16(4), int32(-1), int16(0)]);
  const result = Buffer.concat([
    message('T', Buffer.concat([int16(1), field])),
    message('D', Buffer.concat([int16(1), int32(1), Buffer.from('1')])),
    message('C', Buffer.from('SELECT 1\0')),
    ready,
  ]);
  return class StubSocket extends EventEmitter {
    /** Where the last query's message was written (decoded only by {@link lastQuery}). */
    static last = undefined;
    /** The text of the last simple query any stub socket received. */
    static lastQuery() {
      const { buffer, at } = StubSocket.last;
      return buffer.toString('utf8', at + 5, at + buffer.readInt32BE(at + 1));
    }
    writable = true;
    started = false;
    setNoDelay() {}
    setKeepAlive() {}
    ref() {}
    unref() {}
    connect() {
      setImmediate(() => this.emit('connect'));
      return this;
    }
    write(buffer, callback) {
      const replies = [];
      let at = 0;
      if (!this.started) {
        this.started = true;
        at = buffer.readInt32BE(0);
        replies.push(hello);
      }
      while (at < buffer.length) {
        const type = buffer[at];
        if (type === 0x51 /* Q */) {
          replies.push(result);
          StubSocket.last = { buffer, at };
        }
        else if (type === 0x58 /* X */) {
          setImmediate(() => this.end());
          break;
        } else throw new Error(`stubPostgres: unexpected message ${String.fromCharCode(type)}`);
        at += 1 + buffer.readInt32BE(at + 1);
      }
      if (replies.length > 0) setImmediate(() => this.emit('data', replies.length === 1 ? replies[0] : Buffer.concat(replies)));
      if (typeof callback === 'function') process.nextTick(callback);
      return true;
    }
    end() {
      if (!this.writable) return;
      this.writable = false;
      setImmediate(() => {
        this.emit('end');
        this.emit('close');
      });
    }
    destroy() {
      this.end();
    }
  };
}
