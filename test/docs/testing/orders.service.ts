// orders.service.ts
import { Injectable } from '@nestjs/common';
import { ContextService, currentContext } from 'nestjs-context';
import { MyContext } from './my-context.js';

@Injectable()
export class OrdersService {
  constructor(private readonly context: ContextService<MyContext>) {}

  place(item: string) {
    return { item, correlationId: this.context.get().correlationId, userId: currentContext.userId };
  }
}

// Injects the context class itself, so it is request-scoped.
@Injectable()
export class ReceiptService {
  constructor(private readonly context: MyContext) {}

  receipt(item: string) {
    return `${item} for ${this.context.userId}, request ${this.context.correlationId}`;
  }
}
