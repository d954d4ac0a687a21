import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { ContextLogger } from 'nestjs-context/logger';
import { startChain } from './chain.js';
import { ReceiptLog } from './orders/receipts.js';

const port = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const logger = new ContextLogger({ contextFields: ['userId'] });
const chain = await startChain({
  gatewayPort: port('PORT', 3000),
  ordersPort: port('ORDERS_PORT', 3001),
  billingPort: port('BILLING_PORT', 3002),
  logger,
});
const log = new Logger('Sample');

if (process.argv.includes('--demo')) {
  // One request through the whole chain, then exit: what the README shows.
  const res = await fetch(`${chain.gatewayUrl}/checkout/book`, { headers: { 'x-request-id': 'demo-42' } });
  const body = (await res.json()) as { order: { orderId: string } };
  if (chain.receipts) await chain.orders.get(ReceiptLog).waitFor(body.order.orderId);
  log.log(`response ${res.status}, x-request-id: ${res.headers.get('x-request-id')}: ${JSON.stringify(body)}`);
  await chain.close();
} else {
  chain.gateway.enableShutdownHooks();
  const shutdown = () => void chain.close().then(() => process.exit(0));
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
  log.log(`gateway on ${chain.gatewayUrl}/ — try: curl -i ${chain.gatewayUrl}/ -H 'x-request-id: my-id-1'`);
  log.log(`the chain: curl -i ${chain.gatewayUrl}/checkout/book`);
}
