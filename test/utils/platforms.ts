import type { INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test, type TestingModule } from '@nestjs/testing';

/** The HTTP platforms every e2e suite runs on. */
export const platforms = [
  ['express', () => new ExpressAdapter()],
  ['fastify', () => new FastifyAdapter()],
] as const;

export type PlatformName = (typeof platforms)[number][0];

/** Boots a real Nest app for `moduleClass` on the given adapter; the caller closes it. */
export async function bootApp(
  moduleClass: unknown,
  makeAdapter: () => ExpressAdapter | FastifyAdapter,
  configure?: (app: INestApplication) => void,
): Promise<INestApplication> {
  const moduleRef: TestingModule = await Test.createTestingModule({ imports: [moduleClass as never] }).compile();
  const app = moduleRef.createNestApplication(makeAdapter(), { logger: false });
  configure?.(app);
  await app.init();
  const adapter = app.getHttpAdapter();
  if (adapter.getType() === 'fastify') {
    await (adapter.getInstance() as { ready(): Promise<unknown> }).ready();
  }
  return app;
}
