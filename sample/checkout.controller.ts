import { Controller, Get, Logger, Param, UseGuards } from '@nestjs/common';
import { HttpService } from '@nestjs/axios';
import { firstValueFrom } from 'rxjs';
import { ContextService } from 'nestjs-context';
import { MyContext } from './my-context.js';
import { UserGuard } from './user.guard.js';

/** The gateway's entry to the chain: gateway → orders (HTTP) → billing (TCP) → receipts (BullMQ). */
@Controller('checkout')
@UseGuards(UserGuard)
export class CheckoutController {
  private readonly logger = new Logger('Gateway');

  constructor(
    private readonly http: HttpService,
    private readonly context: ContextService<MyContext>,
  ) {}

  @Get(':item')
  async checkout(@Param('item') item: string) {
    this.logger.log(`checkout of ${item} requested`);
    // No header code here: ContextHttpModule adds x-request-id, traceparent and baggage.
    const { data } = await firstValueFrom(this.http.post<Record<string, unknown>>('/orders', { item }));
    this.logger.log(`order ${String(data.orderId)} placed`);
    return { correlationId: this.context.correlationId, traceId: this.context.trace?.traceId, order: data };
  }
}
