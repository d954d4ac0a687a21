import type { LoggerService } from '@nestjs/common';

/** A Nest logger that keeps the error lines (message, then stack and context, one string each) and drops the rest. */
export class CaptureLogger implements LoggerService {
  readonly errors: string[] = [];
  log(): void {}
  warn(): void {}
  debug(): void {}
  verbose(): void {}
  error(message: unknown, ...rest: unknown[]): void {
    this.errors.push([message, ...rest].map(String).join('\n'));
  }
}
