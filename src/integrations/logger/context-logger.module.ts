import { Inject, Module, type DynamicModule, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ContextConfigError, describe } from '../../errors.js';
import { mountEntry } from '../../entry/http-entry.js';
import { createAccessLog, resolveAccessLog, type AccessLogOptions } from './access-log.js';
import { ContextLogger, type ContextLoggerOptions } from './context-logger.js';
import { markInternal } from '../../runtime/internal.js';

const LOGGER_MODULE_OPTIONS = Symbol.for('nestjs-context:logger-module-options');

/** Options of {@link ContextLoggerModule.forRoot}: the `ContextLogger` it provides, and the access log. */
export interface ContextLoggerModuleOptions extends ContextLoggerOptions {
  /**
   * One line per HTTP request (method, path, status, duration; the logger adds the correlation id,
   * trace id and span id), written through the app's logger when the response ends — 4xx/5xx and
   * aborted requests included. `true` for the defaults, or {@link AccessLogOptions}. Default: off.
   */
  accessLog?: boolean | AccessLogOptions;
}

/**
 * Provides a {@link ContextLogger} for dependency injection and, when asked, the access log.
 * Global; import it once in the root module, next to `ContextModule.forRoot()`.
 *
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext), ContextLoggerModule.forRoot({ json: true, accessLog: true })] })
 * export class AppModule {}
 *
 * const app = await NestFactory.create(AppModule, { bufferLogs: true });
 * app.useLogger(app.get(ContextLogger));
 * app.flushLogs(); // else a line written in a context while the app starts is printed later, without its ids
 */
@Module({})
export class ContextLoggerModule implements NestModule {
  constructor(
    @Inject(LOGGER_MODULE_OPTIONS) private readonly options: ContextLoggerModuleOptions,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  /**
   * Registers the module. The options are checked here, so a wrong one fails at bootstrap.
   * @throws ContextConfigError naming the option that is wrong and how to fix it.
   */
  static forRoot(options: ContextLoggerModuleOptions = {}): DynamicModule {
    if (options === null || typeof options !== 'object') {
      throw new ContextConfigError(`ContextLoggerModule.forRoot(): the options must be an object, got ${describe(options)}. Pass an options object or leave it out.`);
    }
    const { accessLog, ...loggerOptions } = options;
    resolveAccessLog(accessLog);
    const logger = new ContextLogger(loggerOptions);
    return {
      module: ContextLoggerModule,
      global: true,
      providers: [
        { provide: LOGGER_MODULE_OPTIONS, useValue: options },
        { provide: ContextLogger, useValue: logger },
      ],
      exports: [ContextLogger],
    };
  }

  /** Mounts the access log at the front of the HTTP adapter when it is on (called by Nest during `app.init()`). */
  configure(_consumer: MiddlewareConsumer): void {
    const accessLog = resolveAccessLog(this.options.accessLog);
    if (accessLog !== undefined) mountEntry(this.adapterHost?.httpAdapter, createAccessLog(accessLog));
  }
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextLoggerModule);
