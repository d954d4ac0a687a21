import 'reflect-metadata';
import type { DynamicModule } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { ContextModule } from 'nestjs-context';
import { ContextBullModule } from 'nestjs-context/bullmq';
import { ContextEventEmitterModule } from 'nestjs-context/event-emitter';
import { ContextScheduleModule } from 'nestjs-context/schedule';
import { ContextWsModule } from 'nestjs-context/websockets';
import { MyContext } from '../fixtures/app-context.js';

describe('entry-point integrations without ContextModule', () => {
  it.each<[string, () => DynamicModule]>([
    ['ContextBullModule', () => ContextBullModule.forRoot()],
    ['ContextScheduleModule', () => ContextScheduleModule.forRoot()],
    ['ContextEventEmitterModule', () => ContextEventEmitterModule.forRoot()],
    ['ContextWsModule', () => ContextWsModule.forRoot()],
  ])('%s fails at bootstrap with a message saying what to import', async (name, make) => {
    const compile = Test.createTestingModule({ imports: [make()] }).compile();
    await expect(compile).rejects.toThrow(new RegExp(`${name}: no ContextModule found\\. Import ContextModule\\.forRoot\\(MyContext\\)`));
  });

  it('ContextWsModule rejects a handshake option of the wrong type', () => {
    return expect(
      Test.createTestingModule({ imports: [ContextModule.forRoot(MyContext), ContextWsModule.forRoot({ handshake: 'yes' as never })] }).compile(),
    ).rejects.toThrow(/ContextWsModule\.forRoot\(\): handshake must be true, false or a function of the handshake request, got string/);
  });
});
