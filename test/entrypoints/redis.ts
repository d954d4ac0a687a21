import { Redis } from 'ioredis';

/** Where the BullMQ suites expect Redis. */
export const REDIS = { host: '127.0.0.1', port: 6379 } as const;

const START =
  'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no ' +
  '--dir /var/lib/redis --logfile /var/log/redis/ci.log';

/** Fails (never skips) with a message naming Redis and its start command when it is not reachable. */
export async function requireRedis(at: { host: string; port: number } = REDIS): Promise<void> {
  const client = new Redis({ ...at, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const pong = await client.ping();
    if (pong !== 'PONG') throw new Error(`PING answered ${pong}`);
  } catch (error) {
    throw new Error(
      `The BullMQ entry-point tests need a real Redis at ${at.host}:${at.port}, and it is not reachable ` +
        `(${(error as Error).message}). Start it with: ${START}`,
    );
  } finally {
    client.disconnect();
  }
}

/** A queue name unique to this run, so parallel and repeated runs never share jobs. */
export function uniqueQueueName(label: string): string {
  return `nestjs-context-${label}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
