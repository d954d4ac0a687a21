import { connect } from 'node:net';
import type { INestApplication, INestMicroservice, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport } from '@nestjs/microservices';
import { AppModule } from './app.module.js';
import { BillingModule } from './billing/billing.module.js';
import { DEFAULT_POSTGRES, postgresProblem, type PostgresOptions } from './orders/database.js';
import { OrdersModule } from './orders/orders.module.js';

/** Ports of the three services (0 for the HTTP ones picks a free port). */
export interface ChainOptions {
  gatewayPort: number;
  ordersPort: number;
  billingPort: number;
  /** Where Redis is expected for the BullMQ step. Default: 127.0.0.1:6379. */
  redis?: { host: string; port: number };
  /** Where PostgreSQL is expected for the database hop. Default: 127.0.0.1:5432, user postgres, database test. */
  postgres?: PostgresOptions;
  /** The logger of all three apps. */
  logger: LoggerService;
}

/** The running chain. */
export interface Chain {
  gateway: INestApplication;
  orders: INestApplication;
  billing: INestMicroservice;
  gatewayUrl: string;
  /** Whether the BullMQ step runs (Redis was reachable at start). */
  receipts: boolean;
  /** Why the database hop is skipped (PostgreSQL did not answer at start), or `undefined` when it runs. */
  databaseSkipped: string | undefined;
  close(): Promise<void>;
}

/** Whether something accepts TCP connections at host:port within `ms`. */
export function reachable(host: string, port: number, ms = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(ms, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Starts the sample's chain in this process: the gateway (HTTP) → orders (HTTP) → billing (TCP
 * microservice), plus the receipts step (BullMQ) when Redis is reachable and the database hop (a
 * commented pg pool in orders) when PostgreSQL answers. Each is its own Nest app
 * with its own `ContextModule`; the context crosses real sockets between them.
 */
export async function startChain(options: ChainOptions): Promise<Chain> {
  const { logger } = options;
  const redis = options.redis ?? { host: '127.0.0.1', port: 6379 };
  const receipts = await reachable(redis.host, redis.port);
  if (!receipts) logger.warn?.(`Redis is not reachable on ${redis.host}:${redis.port}: the BullMQ receipts step is skipped`, 'Sample');
  const postgres = options.postgres ?? DEFAULT_POSTGRES;
  const databaseSkipped = await postgresProblem(postgres);
  if (databaseSkipped !== undefined) {
    logger.warn?.(
      `PostgreSQL on ${postgres.host}:${postgres.port} (user ${postgres.user}, database ${postgres.database}) did not answer a query (${databaseSkipped}): the database hop is skipped`,
      'Sample',
    );
  }

  const billing = await NestFactory.createMicroservice(BillingModule, {
    transport: Transport.TCP,
    options: { host: '127.0.0.1', port: options.billingPort },
    logger,
  });
  await billing.listen();

  const orders = await NestFactory.create(
    OrdersModule.forRoot({ billingPort: options.billingPort, redis: receipts ? redis : undefined, postgres: databaseSkipped === undefined ? postgres : undefined }),
    { logger },
  );
  await orders.listen(options.ordersPort, '127.0.0.1');
  const ordersUrl = `http://127.0.0.1:${(orders.getHttpServer().address() as { port: number }).port}`;

  process.env.ORDERS_URL = ordersUrl;
  const gateway = await NestFactory.create(AppModule, { logger });
  // Browser code on another origin may call the gateway; `correlationId.exposeHeader` (app.module.ts)
  // adds x-request-id to the exposed headers this writes.
  gateway.enableCors({ origin: process.env.SAMPLE_CORS_ORIGIN ?? 'http://localhost:5173' });
  await gateway.listen(options.gatewayPort, '127.0.0.1');
  const gatewayUrl = `http://127.0.0.1:${(gateway.getHttpServer().address() as { port: number }).port}`;

  return {
    gateway,
    orders,
    billing,
    gatewayUrl,
    receipts,
    databaseSkipped,
    async close() {
      await gateway.close();
      await orders.close();
      await billing.close();
    },
  };
}
