// One benchmark server: `node server.js <variant> <express|fastify>`, started by bench/run.mjs with
// an IPC channel. It listens on 127.0.0.1 (ephemeral port), reports `ready`, then answers `stats`
// (its own CPU time, requests served, RSS), `inspect` (the last handler's probe output) and `stop`.
// It exits when the harness goes away, so no server outlives a run.
import 'reflect-metadata';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { OtelBenchState } from './otel.js';
import { hit, probe } from './probe.js';
import { FIXED_BODY, libraryFeatures, variants } from './variants.js';

type Message = { type: 'stats' | 'inspect' | 'stop'; id?: number };

const [variantName, platform] = process.argv.slice(2);
const require = createRequire(import.meta.url);

/** Sends a message to the harness over IPC (no-op when started without one). */
function send(message: object): void {
  process.send?.(message);
}

/** The plain-platform reference: Express or Fastify serving the fixed body, no Nest. */
async function startRaw(): Promise<{ server: Server; close: () => Promise<unknown> }> {
  if (platform === 'fastify') {
    const fastify = require('fastify') as (options?: object) => {
      get(path: string, handler: () => string): void;
      listen(options: { port: number; host: string }): Promise<string>;
      close(): Promise<void>;
      server: Server;
    };
    const app = fastify({ logger: false });
    app.get('/', () => {
      hit();
      return FIXED_BODY;
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { server: app.server, close: () => app.close() };
  }
  const express = require('express') as () => {
    get(path: string, handler: (req: unknown, res: { send(body: string): void }) => void): void;
    listen(port: number, host: string, callback: () => void): Server;
  };
  const app = express();
  app.get('/', (_req, res) => {
    hit();
    res.send(FIXED_BODY);
  });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return { server, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** Builds the variant's app, listens on 127.0.0.1 and serves the harness's IPC requests. */
async function main(): Promise<void> {
  const variant = variants.find((v) => v.name === variantName);
  if (variant === undefined || (platform !== 'express' && platform !== 'fastify')) {
    throw new Error(`usage: server.js <variant> <express|fastify>; unknown ${variantName}/${platform}`);
  }
  // The OTel variants measure the SDK: without its preload they would silently measure nothing of it.
  const preloaded = (globalThis as Record<symbol, unknown>)[Symbol.for('nestjs-context.bench.otel')] !== undefined;
  if (preloaded !== (variant.otel !== undefined)) {
    throw new Error(
      variant.otel !== undefined
        ? `variant ${variant.name} runs under the OpenTelemetry SDK: start it with node --import <.bench/build/bench/otel.js> (bench/run.mjs does)`
        : `variant ${variant.name} must run without the OpenTelemetry preload (bench/otel.js): drop the --import`,
    );
  }
  const root = variant.module();
  let server: Server;
  let close: () => Promise<unknown>;
  if (root === 'raw') {
    ({ server, close } = await startRaw());
  } else {
    const adapter = platform === 'fastify' ? new FastifyAdapter() : new ExpressAdapter();
    const app = await NestFactory.create(root as never, adapter, { logger: false, abortOnError: false });
    variant.setup?.(app);
    await app.listen(0, '127.0.0.1');
    server = app.getHttpServer() as Server;
    close = () => app.close();
  }
  // Fastify's own keep-alive timeout (72 s) on both platforms: Node's default (5 s) closes idle
  // connections while a batch waits behind valgrind re-translating code on a busy host, and the
  // instruction count then refuses the run. The timer is re-armed per response either way.
  server.keepAliveTimeout = 72_000;
  process.on('message', (message: Message) => {
    if (message.type === 'stats') {
      const memory = process.memoryUsage();
      send({
        type: 'stats',
        id: message.id,
        cpu: process.cpuUsage(),
        served: probe.served,
        rss: memory.rss,
        heapUsed: memory.heapUsed,
        rssAt: probe.rssAt,
        heapAt: probe.heapAt,
      });
    } else if (message.type === 'inspect') {
      // Under the OTel preload (bench/otel.ts), also the spans its exporter received, once flushed.
      const otel = (globalThis as Record<symbol, unknown>)[Symbol.for('nestjs-context.bench.otel')] as OtelBenchState | undefined;
      if (otel === undefined) send({ type: 'inspect', id: message.id, sink: probe.sink });
      else {
        otel.flush().then(
          (spans) => send({ type: 'inspect', id: message.id, sink: probe.sink, otel: { propagator: otel.propagator, ...spans } }),
          (error: unknown) => send({ type: 'inspect', id: message.id, sink: probe.sink, otel: { error: String(error) } }),
        );
      }
    } else if (message.type === 'stop') {
      const timer = setTimeout(() => process.exit(0), 2000);
      timer.unref();
      close().finally(() => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
  const { port } = server.address() as AddressInfo;
  send({
    type: 'ready',
    port,
    features: libraryFeatures,
    spec: { body: variant.body, echo: variant.echo, checks: variant.checks, otel: variant.otel },
  });
}

main().catch((error: unknown) => {
  send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
