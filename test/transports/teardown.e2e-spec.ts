/**
 * Full teardown of the microservices integration (issue #13): the patches on Nest's prototypes are
 * taken once per app (and per direct install) and released when that app closes, whether or not it
 * was ever started; they stay while any user is left, and once the last one has gone every patched
 * method is Nest's own again, and handlers registered afterwards are left untouched.
 */
import 'reflect-metadata';
import { Controller, Get, Module, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientGrpcProxy,
  ClientKafka,
  ClientMqtt,
  ClientNats,
  ClientProxy,
  ClientProxyFactory,
  ClientRedis,
  ClientRMQ,
  ClientTCP,
  Ctx,
  MessagePattern,
  Payload,
  Server,
  ServerGrpc,
  ServerKafka,
  Transport,
  type MicroserviceOptions,
} from '@nestjs/microservices';
import { ListenersController } from '@nestjs/microservices/listeners-controller.js';
import { ExpressAdapter } from '@nestjs/platform-express';
import { firstValueFrom } from 'rxjs';
import { ContextModule, ContextService, currentContext } from '../../src/index.js';
import { ContextMicroservicesModule, propagateGlobalClients } from '../../src/integrations/microservices/index.js';
import { CONTEXT_ENVELOPE_KEY } from '../../src/integrations/microservices/envelope.js';
import { freePort } from '../utils/brokers.js';
import { bootApp } from '../utils/platforms.js';
import { TransportContext } from './fixtures/harness.js';

const ORIGINAL = Symbol.for('nestjs-context:microservices-original');
const WRAPPED = Symbol.for('nestjs-context:microservices-wrapped-handler');

type Bag = Record<string, unknown>;

/** Every method the integration may patch: the server side, Nest's handler registration, the clients. */
const PATCHABLE: ReadonlyArray<[string, Bag, string]> = [
  ['Server#addHandler', Server.prototype as unknown as Bag, 'addHandler'],
  ['ServerGrpc#addHandler', ServerGrpc.prototype as unknown as Bag, 'addHandler'],
  // NestJS 12's own (RegExp patterns); on 11 it is Server#addHandler, inherited.
  ['ServerKafka#addHandler', ServerKafka.prototype as unknown as Bag, 'addHandler'],
  ['ListenersController#registerPatternHandlers', ListenersController.prototype as unknown as Bag, 'registerPatternHandlers'],
  ['ClientProxy#send', ClientProxy.prototype as unknown as Bag, 'send'],
  ['ClientProxy#emit', ClientProxy.prototype as unknown as Bag, 'emit'],
  ['ClientProxy#createPacket', ClientProxy.prototype as unknown as Bag, 'createPacket'],
  ['ClientKafka#emitBatch', ClientKafka.prototype as unknown as Bag, 'emitBatch'],
  ...[ClientTCP, ClientRedis, ClientNats, ClientRMQ, ClientMqtt, ClientKafka].map(
    (type): [string, Bag, string] => [`${type.name}#connect`, type.prototype as unknown as Bag, 'connect'],
  ),
  ['ClientGrpcProxy#createUnaryServiceMethod', ClientGrpcProxy.prototype as unknown as Bag, 'createUnaryServiceMethod'],
  ['ClientGrpcProxy#createStreamServiceMethod', ClientGrpcProxy.prototype as unknown as Bag, 'createStreamServiceMethod'],
];

/** Each method as it is now: the function itself, and whether the prototype holds it as its own property. */
function methods(): Record<string, { fn: unknown; own: boolean }> {
  return Object.fromEntries(
    PATCHABLE.map(([name, target, key]) => [name, { fn: target[key], own: Object.prototype.hasOwnProperty.call(target, key) }]),
  );
}

/** The methods that carry the integration's marker. */
function patched(): string[] {
  return PATCHABLE.filter(([, target, key]) => (target[key] as { [ORIGINAL]?: unknown } | undefined)?.[ORIGINAL] !== undefined).map(
    ([name]) => name,
  );
}

// Taken when this file loads, before anything in it installed the integration.
const NEST_OWN = methods();

@Controller()
class EchoController {
  constructor(private readonly context: ContextService<TransportContext>) {}
  @MessagePattern('teardown.id')
  id(@Payload() payload: unknown): { id: string | undefined; payload: unknown } {
    return { id: this.context.correlationId, payload };
  }
}

@Controller()
class HttpController {
  @Get('id')
  id(): string {
    return (currentContext as unknown as TransportContext).correlationId;
  }
}

@Module({ imports: [ContextModule.forRoot(TransportContext), ContextMicroservicesModule.forRoot()], controllers: [EchoController] })
class WiredModule {}

@Module({ imports: [WiredModule], controllers: [HttpController] })
class HybridModule {}

@Controller()
class PlainController {
  @MessagePattern('teardown.plain')
  plain(@Payload() payload: unknown, @Ctx() transport: { getMetadata?: () => unknown }): { payload: unknown; metadata: unknown } {
    // NestJS 12: what the client put into packet.metadata (nothing, with its patches gone).
    return { payload, metadata: typeof transport.getMetadata === 'function' ? transport.getMetadata() : undefined };
  }
}

@Module({ imports: [ContextModule.forRoot(TransportContext)], controllers: [PlainController] })
class PlainModule {}

const tcp = async (): Promise<{ transport: Transport.TCP; options: { host: string; port: number } }> => ({
  transport: Transport.TCP,
  options: { host: '127.0.0.1', port: await freePort() },
});

describe('teardown of the microservices integration', () => {
  const open: Array<{ close(): Promise<unknown> }> = [];

  afterAll(async () => {
    for (const one of open.reverse()) await one.close();
  });

  it("the patches stay while any app uses them, and are Nest's own methods again after the last one closes", async () => {
    expect(patched()).toEqual([]);

    // A standalone microservice and a hybrid app, both started.
    const standaloneOptions = await tcp();
    const standalone: INestMicroservice = await NestFactory.createMicroservice<MicroserviceOptions>(WiredModule, { ...standaloneOptions, logger: false });
    open.push(standalone);
    await standalone.listen();
    const hybridOptions = await tcp();
    const hybrid: INestApplication = await bootApp(HybridModule, () => new ExpressAdapter(), (app) => app.connectMicroservice(hybridOptions));
    open.push(hybrid);
    await hybrid.startAllMicroservices();
    await hybrid.listen(0, '127.0.0.1');
    const url = (await hybrid.getUrl()).replace('[::1]', '127.0.0.1');
    // An app that is created and closed without ever being started takes its reference and gives it back.
    const neverStarted = await NestFactory.createMicroservice<MicroserviceOptions>(WiredModule, { ...(await tcp()), logger: false });
    await neverStarted.close();

    const all = PATCHABLE.map(([name]) => name).filter((name) => NEST_OWN[name]?.fn !== undefined);
    expect(patched().sort()).toEqual(all.sort());

    await standalone.close();
    open.splice(open.indexOf(standalone), 1);
    // The hybrid app is still running: the patches are all still there, and its clients still carry the context.
    expect(patched().sort()).toEqual(all.sort());
    const client = ClientProxyFactory.create(hybridOptions);
    try {
      const contexts = hybrid.get<ContextService<TransportContext>>(ContextService);
      const reply = await contexts.run(() => firstValueFrom(client.send<{ id: string }>('teardown.id', { a: 1 })), { correlationId: 'still-on' });
      expect(reply).toEqual({ id: 'still-on', payload: { a: 1 } });
      expect(await (await fetch(`${url}/id`, { headers: { 'x-request-id': 'http-on' } })).text()).toBe('http-on');
    } finally {
      await client.close();
    }

    // A direct install outlives the last app.
    const uninstall = await propagateGlobalClients();
    await hybrid.close();
    open.splice(open.indexOf(hybrid), 1);
    expect(patched().sort()).toEqual(all.sort());
    uninstall();
    uninstall();

    expect(patched()).toEqual([]);
    expect(methods()).toEqual(NEST_OWN);
    for (const [name, target, key] of PATCHABLE) expect({ name, fn: target[key] }).toEqual({ name, fn: NEST_OWN[name]?.fn });
  });

  it('handlers registered after the last app closed are left untouched: no wrapper, the envelope reaches them as sent', async () => {
    expect(patched()).toEqual([]);
    const options = await tcp();
    const plain = await NestFactory.createMicroservice<MicroserviceOptions>(PlainModule, { ...options, logger: false });
    open.push(plain);
    await plain.listen();
    const server = (plain as unknown as { serverInstance: Server }).serverInstance;
    const handler = server.getHandlerByPattern('teardown.plain') as unknown as Record<symbol, unknown> | null;
    expect(handler).not.toBeNull();
    expect(handler?.[WRAPPED]).toBeUndefined();

    const client = ClientProxyFactory.create(options);
    try {
      const sent = { [CONTEXT_ENVELOPE_KEY]: { 'x-request-id': 'as-sent' }, data: { b: 2 } };
      const contexts = plain.get<ContextService<TransportContext>>(ContextService);
      const reply = await contexts.run(() => firstValueFrom(client.send<{ payload: unknown; metadata?: Bag }>('teardown.plain', sent)), {
        correlationId: 'not-carried',
      });
      expect(reply.payload).toEqual(sent);
      expect(reply.metadata?.['x-request-id']).toBeUndefined();
    } finally {
      await client.close();
    }
  });
});
