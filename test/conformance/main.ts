import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ConformanceModule } from './conformance.module.js';

/**
 * Runs the W3C Trace Context conformance service on 127.0.0.1:$PORT (default 8080; the official
 * harness listens on 7777 itself). `PLATFORM=fastify` serves it with Fastify instead of Express.
 *
 *   tsc -p test/conformance/tsconfig.json && node dist-conformance/test/conformance/main.js
 *   STRICT_LEVEL=2 SPEC_LEVEL=2 python test.py http://127.0.0.1:8080/test
 */
const port = Number.parseInt(process.env.PORT ?? '8080', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`conformance: PORT must be a port number, got ${JSON.stringify(process.env.PORT)}`);
  process.exit(1);
}

const logger = ['error', 'warn'] as const;
let app: INestApplication;
if (process.env.PLATFORM === 'fastify') {
  const { FastifyAdapter } = await import('@nestjs/platform-fastify');
  app = await NestFactory.create(ConformanceModule, new FastifyAdapter(), { logger: [...logger] });
} else {
  app = await NestFactory.create(ConformanceModule, { logger: [...logger] });
}
app.enableShutdownHooks();
await app.listen(port, '127.0.0.1');
console.log(`nestjs-context conformance service: POST http://127.0.0.1:${port}/test`);
