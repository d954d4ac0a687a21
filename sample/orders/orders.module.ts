import { Module, type DynamicModule } from '@nestjs/common';
import { ClientsModule, Transport } from '@nestjs/microservices';
import { BullModule } from '@nestjs/bullmq';
import { ContextModule } from 'nestjs-context';
import { ContextBullModule } from 'nestjs-context/bullmq';
import { ContextMicroservicesModule } from 'nestjs-context/microservices';
import { BAGGAGE_FIELDS, MyContext } from '../my-context.js';
import { BILLING, OrdersController } from './orders.controller.js';
import { OrdersDatabase, POSTGRES, type PostgresOptions } from './database.js';
import { ReceiptLog, ReceiptsProcessor, RECEIPTS_QUEUE } from './receipts.js';

/** Where the orders service finds its peers. */
export interface OrdersOptions {
  /** The billing microservice's TCP port on 127.0.0.1. */
  billingPort: number;
  /** Redis for the receipts step, or `undefined` to skip that step. */
  redis?: { host: string; port: number };
  /** PostgreSQL for the database hop, or `undefined` to skip that hop. */
  postgres?: PostgresOptions;
}

/** The orders service: HTTP in, TCP to billing, BullMQ for receipts (when Redis is there), PostgreSQL (when it is there). */
@Module({})
export class OrdersModule {
  static forRoot(options: OrdersOptions): DynamicModule {
    const queue = options.redis === undefined
      ? []
      : [
          BullModule.forRoot({ connection: { ...options.redis, maxRetriesPerRequest: null } }),
          BullModule.registerQueue({ name: RECEIPTS_QUEUE }),
          ContextBullModule.forRoot(),
        ];
    return {
      module: OrdersModule,
      imports: [
        ContextModule.forRoot(MyContext, { baggage: { fields: BAGGAGE_FIELDS } }),
        ContextMicroservicesModule.forRoot(),
        ClientsModule.register([{ name: BILLING, transport: Transport.TCP, options: { host: '127.0.0.1', port: options.billingPort } }]),
        ...queue,
      ],
      controllers: [OrdersController],
      providers: [
        ReceiptLog,
        ...(options.redis === undefined ? [] : [ReceiptsProcessor]),
        ...(options.postgres === undefined ? [] : [{ provide: POSTGRES, useValue: options.postgres }, OrdersDatabase]),
      ],
    };
  }
}
