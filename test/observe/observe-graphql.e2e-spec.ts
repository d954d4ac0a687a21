// nestjs-context with @nestjs/observe on GraphQL (in one process: Observe's GraphQL agent loads
// @nestjs/graphql with import(), which Jest can do). Queries over HTTP: one id, the request's, on both
// sides (Observe's GraphQL hooks join the HTTP operation, named by the library's id). Subscriptions
// over graphql-ws: Observe's GraphQL hooks (an Apollo plugin, Mercurius' preParsing hook) do not see
// them, so Observe opens no operation for them of its own and there is no second id: Observe's
// currentTraceId() is null there, and the subscription's context has the library's id alone — on
// Apollo. Mercurius serves them through a Fastify route, which Observe's HTTP hook names.
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { Field, GraphQLModule, ObjectType, Query, Resolver, Subscription } from '@nestjs/graphql';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { createObserveModule, TracerService } from '@nestjs/observe';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { ContextModule, ContextService, type ContextModuleOptions } from '../../src/index.js';
import { ContextGraphQLModule } from '../../src/integrations/graphql/index.js';
import { contextObserveOptions } from '../../src/integrations/observe/index.js';
import { DEFAULT_ID } from '../utils/ids.js';

const { ObserveModule, ObserveInstrument } = createObserveModule(contextObserveOptions());

/** The app's context class (nothing of its own: the test is about the ids). */
class AppContext {}

@ObjectType()
class Ids {
  @Field(() => String, { nullable: true }) correlationId?: string;
  @Field(() => String, { nullable: true }) observe?: string;
}

@Resolver(() => Ids)
class IdsResolver {
  constructor(
    private readonly context: ContextService,
    private readonly tracer: TracerService,
  ) {}

  @Query(() => Ids)
  ids(): Ids {
    return { correlationId: this.context.correlationId, observe: this.tracer.currentTraceId() ?? undefined };
  }

  @Subscription(() => Ids, { resolve: (value: Ids) => value })
  async *idsLater(): AsyncGenerator<Ids> {
    await Promise.resolve();
    yield { correlationId: this.context.correlationId, observe: this.tracer.currentTraceId() ?? undefined };
  }
}

async function boot(driver: 'apollo' | 'mercurius', options: ContextModuleOptions<AppContext> = {}): Promise<{ app: INestApplication; url: string }> {
  const gql =
    driver === 'apollo'
      ? GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, autoSchemaFile: true, graphiql: false, subscriptions: { 'graphql-ws': true } })
      : GraphQLModule.forRoot<MercuriusDriverConfig>({ driver: MercuriusDriver, autoSchemaFile: true, graphiql: false, subscription: { fullWsTransport: true } });
  @Module({
    imports: [
      ContextModule.forRoot(AppContext, options),
      gql,
      ContextGraphQLModule.forRoot(),
      ObserveModule.forRoot({ appKey: 'k', appSecret: 's', serviceId: 'svc', endpoint: 'http://127.0.0.1:9', runtimeMetrics: false }),
    ],
    providers: [IdsResolver],
  })
  class AppModule {}
  const adapter = driver === 'apollo' ? new ExpressAdapter() : new FastifyAdapter();
  const app = await NestFactory.create(AppModule, adapter, { logger: false, instrument: ObserveInstrument });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, url: `http://127.0.0.1:${port}/graphql` };
}

/** The one event of `subscription { idsLater }`, sending `x-request-id` in the handshake headers or in `connectionParams`. */
async function subscribeOnce(url: string, inbound: { header?: string; param?: string }): Promise<Ids> {
  const headers = inbound.header === undefined ? {} : { 'x-request-id': inbound.header };
  class HandshakeSocket extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers });
    }
  }
  const connectionParams = inbound.param === undefined ? {} : { 'x-request-id': inbound.param };
  const client = createClient({ url: url.replace('http', 'ws'), webSocketImpl: HandshakeSocket, connectionParams, retryAttempts: 0 });
  try {
    for await (const result of client.iterate<{ idsLater: Ids }>({ query: 'subscription { idsLater { correlationId observe } }' })) {
      if (result.errors !== undefined) throw new Error(JSON.stringify(result.errors));
      return result.data!.idsLater;
    }
    throw new Error('the subscription ended without an event');
  } finally {
    await client.dispose();
  }
}

describe.each([['Apollo on Express', 'apollo'], ['Mercurius on Fastify', 'mercurius']] as const)('@nestjs/observe and GraphQL (%s)', (_name, driver) => {
  let app: INestApplication;
  let url: string;
  beforeAll(async () => {
    ({ app, url } = await boot(driver));
  });
  afterAll(async () => {
    await app.close();
  });

  it.each([['without an inbound id', undefined], ['with an inbound id', 'gql-inbound-1']] as const)('a query over HTTP, %s: one id', async (_case, inbound) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(inbound === undefined ? {} : { 'x-request-id': inbound }) },
      body: JSON.stringify({ query: '{ ids { correlationId observe } }' }),
    });
    const id = res.headers.get('x-request-id') as string;
    if (inbound === undefined) expect(id).toMatch(DEFAULT_ID);
    else expect(id).toBe(inbound);
    expect(((await res.json()) as { data: { ids: Ids } }).data.ids).toEqual({ correlationId: id, observe: id });
  });

  if (driver === 'apollo') {
    // @nestjs/apollo serves graphql-ws on the HTTP server's upgrade, which no Observe hook sees.
    it.each([
      ['without an inbound id', {}],
      ['with an id in the handshake', { header: 'gql-sub-header-1' }],
      ['with an id in connectionParams', { param: 'gql-sub-param-1' }],
    ] as const)("a subscription over graphql-ws, %s: the library's id alone (Observe opens no operation)", async (_case, inbound: { header?: string; param?: string }) => {
      const seen = await subscribeOnce(url, inbound);
      expect(seen.correlationId).toMatch(inbound.header ?? inbound.param ?? DEFAULT_ID);
      expect(seen.observe).toBeNull();
    });
  } else {
    // Mercurius serves graphql-ws through a Fastify route: Observe's HTTP hook names the upgrade
    // request (asking the library's traceIdGenerator), and every subscription of the connection runs
    // in that operation. The subscription's context adopts that id, or shares the handshake's.
    it('a subscription without an inbound id: the connection\'s id, on both sides', async () => {
      const seen = await subscribeOnce(url, {});
      expect(seen.correlationId).toMatch(DEFAULT_ID);
      expect(seen.observe).toBe(seen.correlationId);
    });

    it('a subscription with an id in the handshake: that id, on both sides', async () => {
      expect(await subscribeOnce(url, { header: 'gql-sub-header-1' })).toEqual({ correlationId: 'gql-sub-header-1', observe: 'gql-sub-header-1' });
    });

    it('a subscription with an id in connectionParams only: two ids (Observe named the connection before the params arrived; docs/observe.md, Limits)', async () => {
      const seen = await subscribeOnce(url, { param: 'gql-sub-param-1' });
      expect(seen.correlationId).toBe('gql-sub-param-1');
      expect(seen.observe).toMatch(DEFAULT_ID);
    });
  }
});

describe('@nestjs/observe and GraphQL (Mercurius on Fastify), inbound ids not trusted', () => {
  let app: INestApplication;
  let url: string;
  beforeAll(async () => {
    ({ app, url } = await boot('mercurius', { trustInbound: false }));
  });
  afterAll(async () => {
    await app.close();
  });

  it("a subscription with an id in the handshake: neither uses it; one fresh id, on both sides", async () => {
    const seen = await subscribeOnce(url, { header: 'gql-untrusted-1' });
    expect(seen.correlationId).toMatch(DEFAULT_ID);
    expect(seen.observe).toBe(seen.correlationId);
  });
});
