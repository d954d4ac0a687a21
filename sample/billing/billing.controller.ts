import { Controller, Logger } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { Ctx as ContextParam, currentContext } from 'nestjs-context';

/** The billing microservice (TCP): charges an order inside the context restored from the message. */
@Controller()
export class BillingController {
  private readonly logger = new Logger('Billing');

  @MessagePattern('billing.charge')
  async charge(@Payload() order: { orderId: string; item: string }, @ContextParam('correlationId') correlationId: string) {
    this.logger.log(`charging order ${order.orderId} (${order.item})`);
    await new Promise((resolve) => setTimeout(resolve, 5));
    return { invoiceId: `inv-${order.orderId}`, seenCorrelationId: correlationId, seenUserId: currentContext.userId };
  }
}
