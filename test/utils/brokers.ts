import { randomInt, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
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

/*
 * Ports are handed out below the kernel's ephemeral range (`ip_local_port_range`), or above it where
 * there is more room: the kernel picks the local port of every outbound connection and every
 * `listen(0)` from that range, so a port taken from it and released (as a check has to) can be taken
 * again by a broker connection in the same moment, before the caller listens on it (CI once failed
 * that way with EADDRINUSE). The kernel hands out no port outside the range; a service that listens on
 * a fixed port there (RabbitMQ's 25672, say) is skipped by the check. Each Jest worker of a run takes
 * its own slice, so the ports of its workers do not meet; two Jest runs side by side on one host would
 * share slices, and only the check stands between them.
 */
const PORT_FLOOR = 10000;
const PORT_SLICE = 400;

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high) && low <= high) return [low, high];
  } catch {
    // Not Linux: the IANA dynamic range, which macOS and Windows use.
  }
  return [49152, 65535];
}

/** A run of ports outside the kernel's ephemeral range. */
export interface PortSlice {
  readonly first: number;
  readonly size: number;
}

/** This worker's slice of the ports outside the ephemeral range, or undefined when there is no room for one. */
function portSlice(): PortSlice | undefined {
  const [low, high] = ephemeralRange();
  const below = { first: PORT_FLOOR, end: low };
  const above = { first: high + 1, end: 65536 };
  const pool = below.end - below.first >= above.end - above.first ? below : above;
  const slices = Math.floor((pool.end - pool.first) / PORT_SLICE);
  if (slices < 1) return undefined;
  const worker = Number(process.env.JEST_WORKER_ID ?? '1');
  return { first: pool.first + ((Number.isInteger(worker) && worker > 0 ? worker - 1 : 0) % slices) * PORT_SLICE, size: PORT_SLICE };
}

/** The slice `freePort` takes ports from in this worker; undefined where it falls back to a port the kernel picks. */
export const freePortSlice: PortSlice | undefined = portSlice();
const slice = freePortSlice;
/** Where the next search starts: a random place in the slice, so test files run one after another in one worker do not retry the same ports first. */
let nextOffset = slice === undefined ? 0 : randomInt(slice.size);

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE' || error.code === 'EACCES') resolve(undefined);
      else reject(error);
    });
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * A free TCP port on 127.0.0.1 (for the embedded TCP and gRPC servers and the child processes the suites
 * start) that nothing else will take before the caller listens on it: see above. A test file is not handed
 * the same port twice until it has gone round its worker's whole slice. Falls back to a port the kernel
 * picks only where the ephemeral range leaves no room below or above it. The check binds 127.0.0.1, where
 * the callers listen; on Linux it also finds a port held on 0.0.0.0 or on a dual-stack `::` (as an app
 * that listens without a host holds it), but not one held on `::1` alone.
 */
export async function freePort(): Promise<number> {
  if (slice !== undefined) {
    for (let tried = 0; tried < slice.size; tried++) {
      const port = slice.first + nextOffset;
      nextOffset = (nextOffset + 1) % slice.size;
      const free = await tryListen(port);
      if (free !== undefined) return free;
    }
    throw new Error(
      `freePort: all ${slice.size} ports from ${slice.first} are in use on 127.0.0.1. Servers from earlier tests were probably not closed; close them in afterAll/afterEach.`,
    );
  }
  const kernelPicked = await tryListen(0);
  if (kernelPicked === undefined) throw new Error('freePort: the kernel gave no free port on 127.0.0.1.');
  return kernelPicked;
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
