import 'reflect-metadata';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientProxyFactory,
  MessagePattern,
  Transport,
  type ClientKafka,
  type ClientNats,
  type ClientProxy,
  type ClientRMQ,
  type ClientTCP,
  type MicroserviceOptions,
} from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { firstValueFrom } from 'rxjs';
import { ContextModule, ContextService } from '../../src/index.js';
import { ContextMicroservicesModule, propagateContext } from '../../src/integrations/microservices/index.js';
import { freePort } from '../utils/brokers.js';
import { TransportContext } from './fixtures/harness.js';

/** Concrete client classes are accepted as they are, without a cast (a compile-time check: tsc covers the tests). */
export type AcceptsConcreteClients = [
  typeof propagateContext<ClientRMQ>,
  typeof propagateContext<ClientKafka>,
  typeof propagateContext<ClientTCP>,
  typeof propagateContext<ClientNats>,
];

@Controller()
class IdController {
  constructor(private readonly context: ContextService<TransportContext>) {}
  @MessagePattern('per-client.id')
  id(): string | undefined {
    return this.context.correlationId;
  }
}

@Module({ imports: [ContextModule.forRoot(TransportContext), ContextMicroservicesModule.forRoot()], controllers: [IdController] })
class ServerModule {}

describe('propagateContext(): one client, without the global install on the sending side', () => {
  let server: INestMicroservice;
  let client: ClientProxy;
  let contexts: ContextService<TransportContext>;
  let closeSender: () => Promise<void>;

  beforeAll(async () => {
    const options = { host: '127.0.0.1', port: await freePort() };
    // Wrapped before anything patched ClientProxy.prototype: this client carries the context on its own.
    client = propagateContext(ClientProxyFactory.create({ transport: Transport.TCP, options }));
    expect(Object.prototype.hasOwnProperty.call(client, 'send')).toBe(true);
    expect(propagateContext(client)).toBe(client);
    const sender = await Test.createTestingModule({ imports: [ContextModule.forRoot(TransportContext)] }).compile();
    await sender.init();
    contexts = sender.get(ContextService);
    closeSender = () => sender.close();
    server = await NestFactory.createMicroservice<MicroserviceOptions>(ServerModule, { transport: Transport.TCP, options, logger: false });
    await server.listen();
  });

  afterAll(async () => {
    await client?.close();
    await server?.close();
    await closeSender?.();
  });

  it('carries the context of the caller', async () => {
    const seen = await contexts.run(() => firstValueFrom(client.send<string>('per-client.id', {})), { correlationId: 'per-client-1' });
    expect(seen).toBe('per-client-1');
  });

  it('a nil payload is still rejected by Nest, not wrapped', async () => {
    await expect(contexts.run(() => firstValueFrom(client.send('per-client.id', null)), { correlationId: 'nil' })).rejects.toThrow();
  });
});
