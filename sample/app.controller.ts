import { Controller, Get, UseGuards } from '@nestjs/common';
import { Ctx, currentContext } from 'nestjs-context';
import { AuditService, GreetingService } from './greeting.service.js';
import { MyContext } from './my-context.js';
import { UserGuard } from './user.guard.js';

@Controller()
@UseGuards(UserGuard)
export class AppController {
  constructor(
    private readonly greeting: GreetingService,
    private readonly audit: AuditService,
  ) {}

  /** The seed's example: return the current correlation id — refresh and see a new one each time. */
  @Get()
  async index(@Ctx() ctx: MyContext, @Ctx('userId') userId: string) {
    return {
      correlationId: currentContext.correlationId,
      message: await this.greeting.greet(),
      userId,
      accessPaths: {
        ctxDecorator: ctx.correlationId,
        contextService: this.greeting.correlationId(),
        injectedClass: this.audit.correlationId(),
        currentContext: currentContext.correlationId,
      },
    };
  }
}
