import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import pg from 'pg';
import { commentPg } from 'nestjs-context/sql';

/** Where the orders service finds PostgreSQL (the machine's: trust auth, database `test`). */
export interface PostgresOptions {
  host: string;
  port: number;
  user: string;
  database: string;
}

/** PostgreSQL as the sample expects it by default. */
export const DEFAULT_POSTGRES: PostgresOptions = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };

/** Injection token of the orders service's PostgreSQL settings. */
export const POSTGRES = Symbol('POSTGRES');

/** What PostgreSQL saw of the order's statement. */
export interface StatementSeen {
  /** The statement text as the server received it (`current_query()`), sqlcommenter comment included. */
  statement: string;
  /** The `correlation_id` of that comment, decoded (`undefined` when the statement has none). */
  correlationId: string | undefined;
}

/**
 * Whether PostgreSQL answers with these settings: `undefined` when it does, otherwise why not (the
 * driver's message), so the sample can say why it skips the database hop.
 */
export async function postgresProblem(options: PostgresOptions): Promise<string | undefined> {
  const client = new pg.Client({ ...options, connectionTimeoutMillis: 1000 });
  // A server that drops the connection later must not crash the check.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    // Duck-typed: an error from another realm (a test runner's) is no `instanceof Error` here. A
    // connection refused on every address of a host name is an AggregateError with no message.
    const { message, code } = (typeof error === 'object' && error !== null ? error : {}) as { message?: unknown; code?: unknown };
    return typeof message === 'string' && message !== '' ? message : typeof code === 'string' ? code : String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The value of `key` in the sqlcommenter comment at the end of `statement`, decoded. */
export function commentValue(statement: string, key: string): string | undefined {
  const comment = /\/\*([^*]*)\*\/\s*;?\s*$/.exec(statement)?.[1];
  for (const pair of comment?.split(',') ?? []) {
    const eq = pair.indexOf('=');
    if (decodeURIComponent(pair.slice(0, eq)) === key) return decodeURIComponent(pair.slice(eq + 2, -1));
  }
  return undefined;
}

/**
 * The orders service's database: a pg `Pool` wrapped with `commentPg`, so every statement issued
 * in a request carries that request's correlation id, `traceparent` and `userId` in a sqlcommenter
 * comment — what `pg_stat_activity` and the server's log show.
 */
@Injectable()
export class OrdersDatabase implements OnApplicationShutdown {
  private readonly pool: pg.Pool;

  constructor(@Inject(POSTGRES) options: PostgresOptions) {
    this.pool = commentPg(new pg.Pool({ ...options, max: 4 }), { fields: ['userId'] });
    // An idle client losing its server is reported here; the next query fails and says so.
    this.pool.on('error', () => undefined);
  }

  /**
   * Runs the order's statement and returns it as PostgreSQL received it: `current_query()` is the
   * text of the statement that calls it, comment and all.
   */
  async recordOrder(orderId: string): Promise<StatementSeen> {
    const { rows } = await this.pool.query<{ statement: string }>('SELECT current_query() AS statement, $1::text AS order_id', [orderId]);
    const statement = rows[0]?.statement ?? '';
    return { statement, correlationId: commentValue(statement, 'correlation_id') };
  }

  /** Closes the pool with the app. */
  async onApplicationShutdown(): Promise<void> {
    await this.pool.end();
  }
}
