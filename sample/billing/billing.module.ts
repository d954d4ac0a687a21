import { Module } from '@nestjs/common';
import { ContextModule } from 'nestjs-context';
import { ContextMicroservicesModule } from 'nestjs-context/microservices';
import { BAGGAGE_FIELDS, MyContext } from '../my-context.js';
import { BillingController } from './billing.controller.js';

/** The billing microservice: a TCP server, no broker needed. */
@Module({
  imports: [ContextModule.forRoot(MyContext, { baggage: { fields: BAGGAGE_FIELDS } }), ContextMicroservicesModule.forRoot()],
  controllers: [BillingController],
})
export class BillingModule {}
