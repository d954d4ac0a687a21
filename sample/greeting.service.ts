import { Injectable, Scope } from '@nestjs/common';
import { ContextService } from 'nestjs-context';
import { MyContext } from './my-context.js';

/** A singleton: reads the context through ContextService (no request scope). */
@Injectable()
export class GreetingService {
  constructor(private readonly context: ContextService<MyContext>) {}

  async greet(): Promise<string> {
    await new Promise((resolve) => setTimeout(resolve, 10)); // the context survives async work
    const { userId, correlationId } = this.context.get();
    return `hello ${userId ?? 'stranger'}, your request is ${correlationId}`;
  }

  correlationId(): string | undefined {
    return this.context.correlationId;
  }
}

/** Request-scoped: gets MyContext by constructor injection. */
@Injectable({ scope: Scope.REQUEST })
export class AuditService {
  constructor(private readonly ctx: MyContext) {}

  correlationId(): string {
    return this.ctx.correlationId;
  }
}
