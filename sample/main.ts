import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { ContextLogger } from 'nestjs-context/logger';
import { startChain } from './chain.js';
import { DEFAULT_POSTGRES, type StatementSeen } from './orders/database.js';
import { ReceiptLog } from './orders/receipts.js';

const port = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const demo = process.argv.includes('--demo');
const logger = new ContextLogger({ contextFields: ['userId'] });
if (!demo) {
  // What to try comes first; the framework's start-up lines stay quiet unless SAMPLE_VERBOSE=1.
  const gateway = `http://localhost:${port('PORT', 3000)}`;
  process.stdout.write(
    [
      '',
      'nestjs-context sample: a gateway, an orders service and a billing microservice, each its own Nest app.',
      'Try, in another terminal:',
      `  curl -i ${gateway}/                                       # the seed example: a new correlation id on every call`,
      `  curl -i ${gateway}/ -H 'x-request-id: my-id-1'            # your id is adopted and echoed`,
      `  curl -i ${gateway}/checkout/book -H 'x-request-id: my-id-2' # one id through HTTP, TCP, BullMQ and PostgreSQL; watch the log lines`,
      `  curl -i ${gateway}/graphql -H 'x-request-id: my-id-3' -H 'content-type: application/json' -d '{"query":"{ hello { correlationId message } }"}'`,
      'Ctrl-C stops it. `npm run sample -- --demo` runs one request through the chain and exits.',
      '',
      '',
    ].join('\n'),
  );
  if (process.env.SAMPLE_VERBOSE !== '1') logger.setLogLevels(['error', 'warn']);
}
const chain = await startChain({
  gatewayPort: port('PORT', 3000),
  ordersPort: port('ORDERS_PORT', 3001),
  billingPort: port('BILLING_PORT', 3002),
  // libpq's variables, as psql reads them; the defaults are the machine's PostgreSQL.
  postgres: {
    host: process.env.PGHOST ?? DEFAULT_POSTGRES.host,
    port: port('PGPORT', DEFAULT_POSTGRES.port),
    user: process.env.PGUSER ?? DEFAULT_POSTGRES.user,
    database: process.env.PGDATABASE ?? DEFAULT_POSTGRES.database,
  },
  logger,
});
const log = new Logger('Sample');

if (demo) {
  // One request through the whole chain, then exit: what the README shows.
  const res = await fetch(`${chain.gatewayUrl}/checkout/book`, { headers: { 'x-request-id': 'demo-42' } });
  const body = (await res.json()) as { order: { orderId: string; database: StatementSeen | string } };
  if (chain.receipts) await chain.orders.get(ReceiptLog).waitFor(body.order.orderId);
  const requestId = res.headers.get('x-request-id');
  log.log(`response ${res.status}, x-request-id: ${requestId}: ${JSON.stringify(body)}`);
  const { database } = body.order;
  log.log(
    typeof database === 'string'
      ? `database hop ${database} (${chain.databaseSkipped ?? 'no reason given'})`
      : `request x-request-id ${requestId}; correlation_id in the statement PostgreSQL saw: ${database.correlationId ?? 'none'}` +
          `${database.correlationId === requestId ? ' (the same)' : ' (DIFFERENT)'}`,
  );
  await chain.close();
} else {
  chain.gateway.enableShutdownHooks();
  const shutdown = () => void chain.close().then(() => process.exit(0));
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
  logger.setLogLevels(['log', 'error', 'warn']);
  log.log(`ready: gateway on ${chain.gatewayUrl}/ (orders and billing behind it)`);
}
