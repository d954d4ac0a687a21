import 'reflect-metadata';
import {
  BadRequestException,
  Body,
  Controller,
  HttpCode,
  Injectable,
  Module,
  Post,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { ContextModule, type ContextInit } from '../../src/index.js';
import { propagateGlobalFetch } from '../../src/integrations/fetch/index.js';

/**
 * The W3C Trace Context validation service (the "test service" of w3c/trace-context `test/`):
 * `POST /test` takes a JSON array of `{ "url": ..., "arguments": [...] }` and, for each element in
 * order, POSTs `arguments` as JSON to `url` through the global `fetch` that nestjs-context
 * propagates. The official harness (or `test/conformance.e2e-spec.ts`) then checks the
 * `traceparent` / `tracestate` headers of those calls.
 */

/** The context of one request to the service; the library fills `correlationId`. */
export class ConformanceContext {
  correlationId: string;
  constructor({ correlationId }: ContextInit) {
    this.correlationId = correlationId;
  }
}

/** One instruction of the harness: POST `arguments` (default `[]`) as JSON to `url`. */
export interface ConformanceAction {
  url: string;
  arguments?: unknown;
}

/** What the service did for one action; the response body is the list of these, in order. */
export type ConformanceResult = { url: string; status: number } | { url: string; error: string };

/** Longest wait for one outgoing call (the harness itself gives up after 5 s per test). */
const CALL_TIMEOUT_MS = 10_000;

/** Checks the request body; a malformed body is rejected before any call is made. */
export function toActions(body: unknown): ConformanceAction[] {
  const list: unknown[] = Array.isArray(body) ? body : body !== null && typeof body === 'object' ? [body] : [];
  if (list.length === 0 && !Array.isArray(body)) {
    throw new BadRequestException('Expected a JSON array of { "url": string, "arguments": [...] }.');
  }
  return list.map((item, i) => {
    const url: unknown = item !== null && typeof item === 'object' ? (item as { url?: unknown }).url : undefined;
    let parsed: URL | undefined;
    try {
      parsed = typeof url === 'string' ? new URL(url) : undefined;
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw new BadRequestException(`Element ${i}: "url" must be an absolute http(s) URL.`);
    }
    return { url: url as string, arguments: (item as { arguments?: unknown }).arguments };
  });
}

@Controller()
export class ConformanceController {
  /**
   * Makes the calls one after the other, each awaited (response body drained) before the next, so
   * the callbacks reach the harness in order. Always 200 for a well-formed body; a call that failed
   * is reported in the body instead of aborting the rest.
   */
  @Post('test')
  @HttpCode(200)
  async test(@Body() body: unknown): Promise<ConformanceResult[]> {
    const results: ConformanceResult[] = [];
    for (const action of toActions(body)) {
      try {
        const response = await fetch(action.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(action.arguments ?? []),
          signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
        });
        await response.arrayBuffer();
        results.push({ url: action.url, status: response.status });
      } catch (error) {
        results.push({ url: action.url, error: error instanceof Error ? error.message : String(error) });
      }
    }
    return results;
  }
}

/** Installs the propagating global `fetch` while the app runs and puts the original back on close. */
@Injectable()
export class FetchPropagation implements OnModuleInit, OnModuleDestroy {
  private uninstall: (() => void) | undefined;

  onModuleInit(): void {
    this.uninstall = propagateGlobalFetch();
  }

  onModuleDestroy(): void {
    this.uninstall?.();
    this.uninstall = undefined;
  }
}

/** The conformance app: the library with its defaults, plus the `/test` endpoint. */
@Module({
  imports: [ContextModule.forRoot(ConformanceContext)],
  controllers: [ConformanceController],
  providers: [FetchPropagation],
})
export class ConformanceModule {}
