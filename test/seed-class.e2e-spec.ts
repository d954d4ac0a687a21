import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Controller, Get, Module, type INestApplication, type LoggerService } from '@nestjs/common';
import request from 'supertest';
import { ContextModule, ContextService, currentContext, type ContextInit } from '../src/index.js';
import { bootApp, platforms } from './utils/platforms.js';

/**
 * Issue #17: the seed (Flask-Context) class made its own id (`self.correlation_id = uuid4().hex`).
 * Ported literally, the object keeps its own id while the response header, `ContextService` and the
 * log lines carry the library's. The library warns once per app, with the fix.
 */

/** The seed's class, ported literally. */
class SeedContext {
  correlationId = randomUUID().replace(/-/g, '');
}

/** The fix the warning gives. */
class FixedContext {
  readonly correlationId: string;
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

class WarnLogger implements LoggerService {
  readonly warnings: string[] = [];
  log(): void {}
  error(): void {}
  debug(): void {}
  verbose(): void {}
  warn(message: unknown, context?: unknown): void {
    this.warnings.push(`[${String(context)}] ${String(message)}`);
  }
}

function appModule(contextClass: new (init: ContextInit) => object, options: { correlationIdField?: false } = {}) {
  @Controller()
  class SeedController {
    constructor(private readonly context: ContextService<{ correlationId: string }>) {}
    @Get() index() {
      return { own: (currentContext as { correlationId?: string }).correlationId, library: this.context.correlationId };
    }
  }
  @Module({ imports: [ContextModule.forRoot(contextClass, options)], controllers: [SeedController] })
  class SeedModule {}
  return SeedModule;
}

describe.each(platforms)('a context class that makes its own id (%s)', (_name, makeAdapter) => {
  const apps: INestApplication[] = [];
  const logger = new WarnLogger();
  async function boot(contextClass: new (init: ContextInit) => object, options?: { correlationIdField?: false }) {
    const app = await bootApp(appModule(contextClass, options), makeAdapter, (a) => a.useLogger(logger));
    apps.push(app);
    return request(app.getHttpServer());
  }
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
    logger.warnings.length = 0;
  });

  it('the seed class written literally: warned once per app, with the fix', async () => {
    const http = await boot(SeedContext);
    const responses = [];
    for (let i = 0; i < 5; i++) responses.push(await http.get('/').set('x-request-id', `seed-${i}`).expect(200));
    // What the warning is about: the object's own id is not the one the header carries.
    for (const [i, res] of responses.entries()) {
      expect(res.headers['x-request-id']).toBe(`seed-${i}`);
      expect(res.body.library).toBe(`seed-${i}`);
      expect(res.body.own).toMatch(/^[0-9a-f]{32}$/);
    }
    expect(logger.warnings).toHaveLength(1);
    const warning = logger.warnings[0] as string;
    expect(warning).toMatch(/^\[ContextModule\] SeedContext\.correlationId holds string "[0-9a-f]{32}", not this context's correlation id "seed-0"/);
    expect(warning).toContain('Take the id from the ContextInit argument of the constructor');
    expect(warning).toContain('constructor({ correlationId }: ContextInit) { this.correlationId = correlationId; }');
    expect(warning).toContain('Warned once per app.');

    // Once per app: a second app with the same class warns again, once.
    const second = await boot(SeedContext);
    await second.get('/').expect(200);
    await second.get('/').expect(200);
    expect(logger.warnings).toHaveLength(2);
  });

  it('the fixed class agrees with the header and warns nothing', async () => {
    const http = await boot(FixedContext);
    const res = await http.get('/').set('x-request-id', 'fixed-1').expect(200);
    expect(res.body).toEqual({ own: 'fixed-1', library: 'fixed-1' });
    expect(logger.warnings).toEqual([]);
  });

  it('correlationIdField: false (the field means something else) warns nothing', async () => {
    const http = await boot(SeedContext, { correlationIdField: false });
    await http.get('/').expect(200);
    expect(logger.warnings).toEqual([]);
  });
});
