// `bufferLogs: true`, as docs/logging.md shows it: `app.useLogger(app.get(ContextLogger))`, then
// `app.flushLogs()`. NestFactory.create() keeps buffering until init() ends, and a buffered line is
// printed at the flush, outside the context it was written in. So a line written in a context while
// the app starts (a queue worker or a scheduled run that starts during onApplicationBootstrap) keeps
// its fields only once the buffer is flushed right after useLogger(). This test starts the app the
// way a user does (NestFactory.create, then listen) on both adapters.
import 'reflect-metadata';
import { Controller, Get, Injectable, Logger, Module, type INestApplication, type OnApplicationBootstrap } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ContextModule, ContextService } from '../../src/index.js';
import { ContextLogger, ContextLoggerModule } from '../../src/integrations/logger/index.js';
import { platforms } from '../utils/platforms.js';
import { captureStdio } from './helpers.js';
import { parseJsonLine, type ParsedLine } from './parse.js';

class BootContext {}

/** Logs one line inside a context of its own while the app starts, as a worker picking up a job would. */
@Injectable()
class StartupWork implements OnApplicationBootstrap {
  private readonly logger = new Logger('StartupWork');
  /** The correlation id of the context the line was written in. */
  id: string | undefined;
  constructor(private readonly context: ContextService) {}

  onApplicationBootstrap(): void {
    this.context.run(() => {
      this.id = this.context.correlationId;
      this.logger.log('started in a context');
    });
  }
}

@Controller()
class PingController {
  private readonly logger = new Logger('PingController');
  @Get('ping')
  ping(): string {
    this.logger.log('ping');
    return 'pong';
  }
}

@Module({
  imports: [ContextModule.forRoot(BootContext), ContextLoggerModule.forRoot({ json: true })],
  controllers: [PingController],
  providers: [StartupWork],
})
class BootModule {}

describe.each(platforms)('bufferLogs: true with ContextLogger on %s', (_platform, makeAdapter) => {
  let app: INestApplication | undefined;
  let capture: ReturnType<typeof captureStdio> | undefined;
  const parsed = (): ParsedLine[] => (capture?.lines() ?? []).map(parseJsonLine).filter((line): line is ParsedLine => line !== undefined);

  afterEach(async () => {
    await app?.close();
    app = undefined;
    capture?.restore();
    capture = undefined;
  });

  it('useLogger() then flushLogs(): the start-up lines come out at once, and a line written in a context during start-up carries its id', async () => {
    capture = captureStdio();
    app = await NestFactory.create(BootModule, makeAdapter(), { bufferLogs: true });
    app.useLogger(app.get(ContextLogger));
    app.flushLogs();
    // Buffered while the module was built, printed by flushLogs() with the logger the app uses.
    expect(parsed().some((line) => line.context === 'InstanceLoader')).toBe(true);

    await app.listen(0, '127.0.0.1');
    const id = app.get(StartupWork).id;
    expect(id).toEqual(expect.any(String));
    const started = parsed().filter((line) => line.message === 'started in a context');
    expect(started).toHaveLength(1);
    expect(started[0]?.fields.correlationId).toBe(id);

    const res = await fetch(`${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/ping`, { headers: { 'x-request-id': 'buffered-1' } });
    expect(await res.text()).toBe('pong');
    expect(parsed().filter((line) => line.message === 'ping').map((line) => line.fields.correlationId)).toEqual(['buffered-1']);
  });
});
