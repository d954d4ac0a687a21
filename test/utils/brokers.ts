import { randomUUID } from 'node:crypto';
import { createServer, connect } from 'node:net';

/** The brokers and databases the transport, queue, SQL and sample suites need, with the command that starts each one (as `.ci/run` does). */
export const brokers = {
  redis: {
    name: 'Redis',
    host: '127.0.0.1',
    port: 6379,
    start: 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
  },
  nats: {
    name: 'NATS',
    host: '127.0.0.1',
    port: 4222,
    start: 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log',
  },
  rabbitmq: { name: 'RabbitMQ', host: '127.0.0.1', port: 5672, start: 'rabbitmq-server -detached (user guest/guest)' },
  mqtt: { name: 'Mosquitto (MQTT)', host: '127.0.0.1', port: 1883, start: 'mosquitto -d -c /etc/mosquitto/mosquitto.conf' },
  postgres: {
    name: 'PostgreSQL (database test, trust auth)',
    host: '127.0.0.1',
    port: 5432,
    start: 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
  },
  mariadb: {
    name: 'MariaDB (database test, root without password)',
    host: '127.0.0.1',
    port: 3306,
    start: 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd',
  },
} as const;

/** One of {@link brokers}. */
export type BrokerName = keyof typeof brokers;

/** Where a broker listens and how to start it. */
export interface BrokerInfo {
  name: string;
  host: string;
  port: number;
  start: string;
}

/**
 * Fails (never skips) when a broker is not accepting connections, with a message naming the broker
 * and how to start it. Call it in `beforeAll`.
 */
export async function requireBroker(which: BrokerName | BrokerInfo, timeoutMs = 2000): Promise<void> {
  const broker: BrokerInfo = typeof which === 'string' ? brokers[which] : which;
  const problem = await new Promise<string | undefined>((resolve) => {
    const socket = connect({ host: broker.host, port: broker.port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(`no answer within ${timeoutMs} ms`);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.end();
      resolve(undefined);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(error.code ?? error.message);
    });
  });
  if (problem !== undefined) {
    throw new Error(
      `${broker.name} is not reachable on ${broker.host}:${broker.port} (${problem}) — start it with: ${broker.start}. ` +
        `These tests need the real broker and do not skip.`,
    );
  }
}

/** A name unique to this test run (queues, channels, subjects), so parallel workers and CI runs never collide. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomUUID().slice(0, 8)}`;
}

/** A free TCP port on 127.0.0.1 (for the embedded TCP and gRPC servers). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Resolves once the broker has taken the subscriptions a just-started NATS or Redis microservice made.
 * Nest sends them in `listen()` without waiting for the broker, so an event published from another
 * connection right after `listen()` can reach the broker first and be dropped (no subscriber yet).
 * One round trip on the server's own connection settles that, since the broker answers in order.
 */
export async function subscriptionsSettled(app: { unwrap<T>(): T }, broker: 'nats' | 'redis'): Promise<void> {
  if (broker === 'nats') await app.unwrap<{ flush(): Promise<void> }>().flush();
  else await app.unwrap<[unknown, { ping(): Promise<unknown> }]>()[1].ping();
}
