import { Module } from '@nestjs/common';
import { GraphQLModule } from '@nestjs/graphql';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { ContextModule } from 'nestjs-context';
import { ContextGraphQLModule } from 'nestjs-context/graphql';
import { ContextLoggerModule } from 'nestjs-context/logger';
import { ContextHttpModule } from 'nestjs-context/nestjs-axios';
import { AppController } from './app.controller.js';
import { CheckoutController } from './checkout.controller.js';
import { AuditService, GreetingService } from './greeting.service.js';
import { GreetingResolver } from './greeting.resolver.js';
import { BAGGAGE_FIELDS, MyContext } from './my-context.js';

/** The edge proxy's request id, prefixed so its origin shows in the logs; `undefined` gives the default id. */
function edgeRequestId(header: string | string[] | undefined): string | undefined {
  return typeof header === 'string' ? `edge-${header}` : undefined;
}

/**
 * The gateway: the seed example at `GET /`, and `GET /checkout/:item`, which calls the orders
 * service (`ORDERS_URL`, default http://127.0.0.1:3001) through a propagating `HttpService`; and
 * `POST /graphql` (Apollo), whose `hello` query answers like `GET /`.
 */
@Module({
  imports: [
    ContextModule.forRoot(MyContext, {
      baggage: { fields: BAGGAGE_FIELDS },
      correlationId: {
        // Browser code can read x-request-id; error bodies carry the id; an id set by the edge proxy
        // in front of the gateway (x-edge-request-id) is used when the client sends none.
        exposeHeader: true,
        errorBody: true,
        generate: ({ request }) => edgeRequestId(request?.headers['x-edge-request-id']),
      },
    }),
    ContextLoggerModule.forRoot({ contextFields: ['userId'], accessLog: { context: 'GatewayAccess' } }),
    ContextHttpModule.registerAsync({
      useFactory: () => ({ baseURL: process.env.ORDERS_URL ?? 'http://127.0.0.1:3001', timeout: 5000 }),
    }),
    GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, autoSchemaFile: true, graphiql: false }),
    ContextGraphQLModule.forRoot(),
  ],
  controllers: [AppController, CheckoutController],
  providers: [GreetingService, AuditService, GreetingResolver],
})
export class AppModule {}
