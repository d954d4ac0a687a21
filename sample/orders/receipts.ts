import { Injectable, Logger } from '@nestjs/common';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';
import { ContextService } from 'nestjs-context';
import { MyContext } from '../my-context.js';

/** The BullMQ queue of the receipts step. */
export const RECEIPTS_QUEUE = 'sample-receipts';

/** What the receipts step has done, so the demo (and the test) can wait for a receipt. */
@Injectable()
export class ReceiptLog {
  private readonly sent = new Map<string, string>();
  private readonly waiting = new Map<string, (correlationId: string) => void>();

  /** Records that the receipt of `orderId` went out in the context `correlationId`. */
  record(orderId: string, correlationId: string): void {
    this.sent.set(orderId, correlationId);
    this.waiting.get(orderId)?.(correlationId);
    this.waiting.delete(orderId);
  }

  /** Resolves with the correlation id the receipt of `orderId` was sent in. */
  waitFor(orderId: string): Promise<string> {
    const done = this.sent.get(orderId);
    if (done !== undefined) return Promise.resolve(done);
    return new Promise((resolve) => this.waiting.set(orderId, resolve));
  }
}

/** The receipts worker: runs each job inside the context of the request that queued it. */
@Processor(RECEIPTS_QUEUE)
export class ReceiptsProcessor extends WorkerHost {
  private readonly logger = new Logger('Receipts');

  constructor(
    private readonly context: ContextService<MyContext>,
    private readonly receipts: ReceiptLog,
  ) {
    super();
  }

  async process(job: Job<{ orderId: string }>): Promise<void> {
    this.logger.log(`sending receipt for order ${job.data.orderId}`);
    this.receipts.record(job.data.orderId, this.context.correlationId ?? 'none');
  }
}
