/**
 * `nestjs-context/logger`: Nest's own logger with the context on every line, and an optional
 * access log. No extra dependency.
 *
 * @module nestjs-context/logger
 */
export { ContextLogger, type ContextLoggerOptions } from './context-logger.js';
export { ContextLoggerModule, type ContextLoggerModuleOptions } from './context-logger.module.js';
export { formatAccessLogEntry, type AccessLogEntry, type AccessLogOptions } from './access-log.js';
export * from '../../logging/public.js';
