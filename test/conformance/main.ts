import 'reflect-metadata';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DynamicModule, INestApplication, Type } from '@nestjs/common';

/**
 * Runs the W3C Trace Context conformance service on 127.0.0.1:$PORT (default 8080; the official
 * harness listens on 7777 itself; 0 picks a free one, printed). `PLATFORM=fastify` serves it with Fastify instead of Express.
 * `CONFORMANCE_OTEL=1` runs it with the OpenTelemetry SDK active (see ./otel.ts) and
 * `ContextOpenTelemetryModule.forRoot()` imported: the interop mode, where OTel's instrumentations
 * write the callbacks' trace headers; `GET /otel/spans` then lists the spans OTel finished.
 *
 *   tsc -p test/conformance/tsconfig.json && node dist-conformance/test/conformance/main.js
 *   STRICT_LEVEL=2 SPEC_LEVEL=2 python test.py http://127.0.0.1:8080/test
 *
 * Nest, the platforms and the app are imported dynamically, after the SDK started: its http
 * instrumentation hooks `node:http` when express or fastify first require()s it.
 */
const port = Number.parseInt(process.env.PORT ?? '8080', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`conformance: PORT must be a port number, got ${JSON.stringify(process.env.PORT)}`);
  process.exit(1);
}
const otelMode = process.env.CONFORMANCE_OTEL ?? '';
if (!['', '0', '1'].includes(otelMode)) {
  console.error(`conformance: CONFORMANCE_OTEL must be 1 (OpenTelemetry interop mode) or 0/unset, got ${JSON.stringify(otelMode)}`);
  process.exit(1);
}

const otel = otelMode === '1' ? (await import('./otel.js')).startOtel() : undefined;
const { NestFactory } = await import('@nestjs/core');
const { ConformanceModule } = await import('./conformance.module.js');
const root: Type | DynamicModule = otel === undefined ? ConformanceModule : (await import('./otel.module.js')).ConformanceOtelModule.forRoot(otel);

const logger = ['error', 'warn'] as const;
let app: INestApplication;
if (process.env.PLATFORM === 'fastify') {
  const { FastifyAdapter } = await import('@nestjs/platform-fastify');
  app = await NestFactory.create(root, new FastifyAdapter(), { logger: [...logger] });
} else {
  app = await NestFactory.create(root, { logger: [...logger] });
}
app.enableShutdownHooks();
if (otel !== undefined) process.once('beforeExit', () => void otel.shutdown());
await app.listen(port, '127.0.0.1');
const { port: bound } = (app.getHttpServer() as Server).address() as AddressInfo; // PORT=0: the one the system chose
const mode = otel === undefined ? '' : ' (OpenTelemetry interop mode: GET /otel/spans lists the finished spans)';
console.log(`nestjs-context conformance service: POST http://127.0.0.1:${bound}/test${mode}`);
