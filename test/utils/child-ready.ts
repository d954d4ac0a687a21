import type { INestApplication } from '@nestjs/common';

/**
 * The end of an app script run in its own Node process (`test/logging/child.ts`): listens on a free
 * loopback port, closes the app and exits on SIGTERM, and prints `READY <url>` on stderr, which the
 * test waits for.
 */
export async function listenAndAnnounce(app: INestApplication): Promise<void> {
  await app.listen(0, '127.0.0.1');
  process.once('SIGTERM', () => {
    void app.close().finally(() => process.exit(0));
  });
  process.stderr.write(`READY ${(await app.getUrl()).replace('[::1]', '127.0.0.1')}\n`);
}
