import { Module } from '@nestjs/common';
import { ContextModule } from 'nestjs-context';
import { AppController } from './app.controller.js';
import { AuditService, GreetingService } from './greeting.service.js';
import { MyContext } from './my-context.js';

@Module({
  imports: [ContextModule.forRoot(MyContext)],
  controllers: [AppController],
  providers: [GreetingService, AuditService],
})
export class AppModule {}
