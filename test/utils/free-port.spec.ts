import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { freePort } from './brokers.js';

/** The suites' `freePort` (test/utils/brokers.ts): ports outside the kernel's ephemeral range, distinct from call to call, and really free. */
describe('freePort', () => {
  // Linux's ephemeral range, or the IANA dynamic range elsewhere (as freePort reads it).
  const [low, high] = existsSync('/proc/sys/net/ipv4/ip_local_port_range')
    ? readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    : [49152, 65535];
  const servers: Server[] = [];
  afterAll(async () => {
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });

  it('hands out distinct ports outside the ephemeral range that can be listened on', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 20; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    for (const port of ports) {
      expect(port < low || port > high).toBe(true);
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
    }
  });

  it('skips a port that something already listens on', async () => {
    const taken = await freePort();
    const holder = createServer();
    servers.push(holder);
    await new Promise<void>((resolve) => holder.listen(taken, '127.0.0.1', resolve));
    const ports: number[] = [];
    for (let i = 0; i < 400; i++) ports.push(await freePort());
    expect(ports).not.toContain(taken);
  });
});
