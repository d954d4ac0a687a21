// orders.service.spec.ts
import { beforeAll, describe, expect, it } from '@jest/globals';
import { ContextIdFactory } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import { ContextNotActiveError, currentContext } from 'nestjs-context';
import { ContextTester, ContextTestingModule } from 'nestjs-context/testing';
import { MyContext } from './my-context.js';
import { OrdersService, ReceiptService } from './orders.service.js';

describe('OrdersService', () => {
  let moduleRef: TestingModule;
  let tester: ContextTester<MyContext>;

  beforeAll(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [ContextTestingModule.forRoot(MyContext)],
      providers: [OrdersService, ReceiptService],
    }).compile();
    tester = moduleRef.get(ContextTester);
  });

  it('sees the context object you give it', () => {
    const context = new MyContext({ correlationId: 'test-1', source: 'manual' });
    context.userId = 'u-42';
    const order = tester.runWith(context, () => moduleRef.get(OrdersService).place('book'));
    expect(order).toEqual({ item: 'book', correlationId: 'test-1', userId: 'u-42' });
  });

  it('or one your class builds for a correlation id', async () => {
    await tester.runWith({ correlationId: 'test-2' }, async () => {
      currentContext.userId = 'u-7';
      expect(moduleRef.get(OrdersService).place('pen')).toEqual({ item: 'pen', correlationId: 'test-2', userId: 'u-7' });
    });
  });

  it('request-scoped providers resolved inside runWith get the same context', async () => {
    await tester.runWith({ correlationId: 'test-3' }, async () => {
      currentContext.userId = 'u-9';
      const receipts = await moduleRef.resolve(ReceiptService, ContextIdFactory.create());
      expect(receipts.receipt('cup')).toBe('cup for u-9, request test-3');
    });
  });

  it('outside runWith there is no context', () => {
    expect(() => moduleRef.get(OrdersService).place('cup')).toThrow(ContextNotActiveError);
  });
});
