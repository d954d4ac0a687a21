import { Body, Controller, Inject, Logger, Optional, Post } from '@nestjs/common';
import { ClientProxy } from '@nestjs/microservices';
import { InjectQueue } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import { firstValueFrom } from 'rxjs';
import { ContextService } from 'nestjs-context';
import { MyContext } from '../my-context.js';
import { OrdersDatabase } from './database.js';
import { RECEIPTS_QUEUE } from './receipts.js';

/** Injection token of the billing microservice's client. */
export const BILLING = Symbol('BILLING');

let orders = 0;

/** The orders service (HTTP): places an order, bills it over TCP and queues its receipt. */
@Controller('orders')
export class OrdersController {
  private readonly logger = new Logger('Orders');

  constructor(
    @Inject(BILLING) private readonly billing: ClientProxy,
    private readonly context: ContextService<MyContext>,
    @Optional() @InjectQueue(RECEIPTS_QUEUE) private readonly receipts?: Queue,
    @Optional() private readonly database?: OrdersDatabase,
  ) {}

  @Post()
  async place(@Body() body: { item?: string }) {
    const item = String(body.item ?? 'nothing');
    const orderId = `o${++orders}`;
    this.logger.log(`placing order ${orderId} for ${this.context.get().userId ?? 'anonymous'}`);
    // No metadata code here: ContextMicroservicesModule puts the context on the message.
    const invoice = await firstValueFrom(this.billing.send<Record<string, unknown>>('billing.charge', { orderId, item }));
    // ... and ContextBullModule puts it on the job.
    if (this.receipts !== undefined) await this.receipts.add('receipt', { orderId }, { removeOnComplete: true, removeOnFail: true });
    const receipt = this.receipts === undefined ? 'skipped: Redis is not reachable' : 'queued';
    this.logger.log(`order ${orderId} billed as ${String(invoice.invoiceId)}, receipt ${receipt}`);
    // No SQL code here either: commentPg (database.ts) appends the context to the statement.
    const database = this.database === undefined ? 'skipped: PostgreSQL did not answer at start' : await this.database.recordOrder(orderId);
    if (typeof database !== 'string') this.logger.log(`order ${orderId} recorded; PostgreSQL saw: ${database.statement}`);
    return { orderId, item, invoice, receipt, database, seenCorrelationId: this.context.correlationId, seenUserId: this.context.get().userId };
  }
}
