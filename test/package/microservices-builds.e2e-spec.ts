/**
 * The ESM and CommonJS builds of the microservices integration in one process (issue #13): the
 * patches live on Nest's prototypes, of which there is one set, so the builds share one count of
 * their users. An app wired with each build, closed in either order: every patch stays while one of
 * them runs (its clients still carry the context, its guards see its own context), and all are gone
 * once both have closed. Runs the built `dist/` (built by `npm test`) in a plain Node process.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort } from '../utils/brokers.js';

const ROOT = process.cwd();

/**
 * The child process: two TCP microservice apps, one per build, on `ports` (from the suite's `freePort`);
 * `order` says which build's app closes first.
 */
const SCRIPT = (order: 'esm' | 'cjs', ports: { esm: number; cjs: number }): string => `
import 'reflect-metadata';
import { createRequire } from 'node:module';
import * as common from '@nestjs/common';
import * as core from '@nestjs/core';
import * as ms from '@nestjs/microservices';
import { ListenersController } from '@nestjs/microservices/listeners-controller.js';
import { firstValueFrom } from 'rxjs';
const esm = { ...(await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist/esm/index.js')).href)})), ...(await import(${JSON.stringify(
  pathToFileURL(join(ROOT, 'dist/esm/integrations/microservices/index.js')).href,
)})) };
const require = createRequire(${JSON.stringify(join(ROOT, 'package.json'))});
const cjs = { ...require(${JSON.stringify(join(ROOT, 'dist/cjs/index.js'))}), ...require(${JSON.stringify(join(ROOT, 'dist/cjs/integrations/microservices/index.js'))}) };
if (esm.ContextModule === cjs.ContextModule || esm.ContextMicroservicesModule === cjs.ContextMicroservicesModule) throw new Error('expected two builds');

const ORIGINAL = Symbol.for('nestjs-context:microservices-original');
const targets = [
  ['Server#addHandler', ms.Server.prototype, 'addHandler'],
  ['ServerGrpc#addHandler', ms.ServerGrpc.prototype, 'addHandler'],
  ['ListenersController#registerPatternHandlers', ListenersController.prototype, 'registerPatternHandlers'],
  ['ClientProxy#send', ms.ClientProxy.prototype, 'send'],
  ['ClientProxy#emit', ms.ClientProxy.prototype, 'emit'],
  ['ClientTCP#connect', ms.ClientTCP.prototype, 'connect'],
  ['ClientGrpcProxy#createUnaryServiceMethod', ms.ClientGrpcProxy.prototype, 'createUnaryServiceMethod'],
];
const nestOwn = targets.map(([, target, key]) => target[key]);
const patched = () => targets.filter(([, target, key]) => target[key]?.[ORIGINAL] !== undefined).map(([name]) => name);
const untouched = () => targets.every(([, target, key], i) => target[key] === nestOwn[i]);

const look = (service) => {
  try { const context = service.get(); return { cls: context.constructor.name, id: context.correlationId }; }
  catch (error) { return { error: error.name }; }
};

function appModule(lib, name, pattern) {
  const { Controller, Inject, Injectable, Module, UseGuards } = common;
  const Context = { [name]: class { constructor(init) { this.correlationId = init.correlationId; } } }[name];
  class Guard {
    constructor(service) { this.service = service; }
    canActivate(ctx) { ctx.switchToRpc().getData().guard = look(this.service); return true; }
  }
  Inject(lib.ContextService)(Guard, undefined, 0);
  Injectable()(Guard);
  class Handlers {
    constructor(service) { this.service = service; }
    who(data) { return { guard: data.guard, handler: look(this.service) }; }
  }
  Inject(lib.ContextService)(Handlers, undefined, 0);
  const descriptor = Object.getOwnPropertyDescriptor(Handlers.prototype, 'who');
  ms.MessagePattern(pattern)(Handlers.prototype, 'who', descriptor);
  UseGuards(Guard)(Handlers.prototype, 'who', descriptor);
  Controller()(Handlers);
  class AppModule {}
  Module({ imports: [lib.ContextModule.forRoot(Context), lib.ContextMicroservicesModule.forRoot()], controllers: [Handlers] })(AppModule);
  return AppModule;
}

async function start(lib, name, port) {
  const options = { transport: ms.Transport.TCP, options: { host: '127.0.0.1', port } };
  const app = await core.NestFactory.createMicroservice(appModule(lib, name, 'dual.' + name), { ...options, logger: false });
  await app.listen();
  return { app, lib, name, options };
}

/** A message from inside the app's own context, through a client, to the app's own server. */
async function roundTrip({ app, lib, name, options }, id) {
  const client = ms.ClientProxyFactory.create(options);
  try {
    return await app.get(lib.ContextService).run(() => firstValueFrom(client.send('dual.' + name, { n: 1 })), { correlationId: id });
  } finally {
    await client.close();
  }
}

const report = { before: patched() };
const ports = ${JSON.stringify(ports)};
const apps = { esm: await start(esm, 'EsmContext', ports.esm), cjs: await start(cjs, 'CjsContext', ports.cjs) };
report.bothRunning = patched();
report.bothReplies = [await roundTrip(apps.esm, 'esm-1'), await roundTrip(apps.cjs, 'cjs-1')];
const [first, second] = ${JSON.stringify(order)} === 'esm' ? [apps.esm, apps.cjs] : [apps.cjs, apps.esm];
await first.app.close();
report.oneRunning = patched();
report.oneReply = await roundTrip(second, 'second-1');
await second.app.close();
report.noneRunning = patched();
report.untouched = untouched();
console.log(JSON.stringify(report));
`;

async function run(order: 'esm' | 'cjs'): Promise<{ code: number; stdout: string; stderr: string }> {
  const ports = { esm: await freePort(), cjs: await freePort() };
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', SCRIPT(order, ports)],
      { cwd: ROOT, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
    );
  });
}

describe('the ESM and CommonJS builds of the microservices integration in one process', () => {
  beforeAll(() => {
    for (const build of ['esm', 'cjs']) {
      if (!existsSync(join(ROOT, `dist/${build}/integrations/microservices/index.js`))) {
        throw new Error('dist/ is missing: these tests load the built package. Run `npm run build` first (`npm test` does).');
      }
    }
  });

  const ALL = [
    'Server#addHandler',
    'ServerGrpc#addHandler',
    'ListenersController#registerPatternHandlers',
    'ClientProxy#send',
    'ClientProxy#emit',
    'ClientTCP#connect',
    'ClientGrpcProxy#createUnaryServiceMethod',
  ];

  it.each(['esm', 'cjs'] as const)(
    "closing the %s build's app first: the patches stay while the other runs, and are all gone after both closed",
    async (order) => {
      const { code, stdout, stderr } = await run(order);
      expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
      const report = JSON.parse(stdout.trim().split('\n').pop()!);
      const second = order === 'esm' ? { cls: 'CjsContext' } : { cls: 'EsmContext' };
      expect(report).toEqual({
        before: [],
        bothRunning: ALL,
        bothReplies: [
          { guard: { cls: 'EsmContext', id: 'esm-1' }, handler: { cls: 'EsmContext', id: 'esm-1' } },
          { guard: { cls: 'CjsContext', id: 'cjs-1' }, handler: { cls: 'CjsContext', id: 'cjs-1' } },
        ],
        oneRunning: ALL,
        oneReply: { guard: { ...second, id: 'second-1' }, handler: { ...second, id: 'second-1' } },
        noneRunning: [],
        untouched: true,
      });
    },
  );
});
