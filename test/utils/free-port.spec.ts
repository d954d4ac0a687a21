import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { freePort, freePortSlice } from './brokers.js';

/**
 * The suites' `freePort` (test/utils/brokers.ts): ports from this worker's slice outside the kernel's
 * ephemeral range (or, on a host whose range leaves no room for one, ports the kernel picks), distinct
 * from call to call, really free, and never one that something listens on.
 */
describe('freePort', () => {
  // Linux's ephemeral range, or the IANA dynamic range elsewhere (as freePort reads it).
  const [low, high] = existsSync('/proc/sys/net/ipv4/ip_local_port_range')
    ? readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    : [49152, 65535];
  const servers: Server[] = [];
  const listen = (port: number): Promise<void> => {
    const server = createServer();
    servers.push(server);
    return new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
  };
  afterAll(async () => {
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });

  it('hands out distinct ports that can be listened on, from its slice outside the ephemeral range', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 20; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    for (const port of ports) {
      if (freePortSlice !== undefined) {
        expect(port < low || port > high).toBe(true);
        expect(port >= freePortSlice.first && port < freePortSlice.first + freePortSlice.size).toBe(true);
      }
      await listen(port);
    }
  });

  it('never hands out a port that something listens on, over a whole round of its slice', async () => {
    const taken = await freePort();
    await listen(taken);
    const held = servers.map((server) => (server.address() as { port: number }).port);
    const ports: number[] = [];
    for (let i = 0; i < (freePortSlice?.size ?? 400); i++) ports.push(await freePort());
    expect(ports.filter((port) => held.includes(port))).toEqual([]);
    expect(held).toContain(taken);
  });
});
