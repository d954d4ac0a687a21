// app.module.ts
import { Controller, Get, Module, NotFoundException, Param } from '@nestjs/common';
import { ContextModule, currentContext } from 'nestjs-context';
import { MyContext } from './my-context.js';

@Controller('orders')
export class OrdersController {
  @Get('mine')
  mine() {
    return { correlationId: currentContext.correlationId };
  }

  @Get(':id')
  one(@Param('id') id: string) {
    throw new NotFoundException(`no order ${id}`);
  }
}

@Module({
  imports: [ContextModule.forRoot(MyContext, { correlationId: { exposeHeader: true, errorBody: true } })],
  controllers: [OrdersController],
})
export class AppModule {}
