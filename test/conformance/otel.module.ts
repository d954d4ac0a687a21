import { Controller, Get, Inject, Module, type DynamicModule } from '@nestjs/common';
import { ContextOpenTelemetryModule } from '../../src/integrations/opentelemetry/index.js';
import { ConformanceModule } from './conformance.module.js';
import type { ConformanceOtel, SpanSummary } from './otel.js';

/** Injection token of the running SDK (see ./otel.ts). */
const OTEL = Symbol('conformance:otel');

/** `GET /otel/spans`: the spans OTel finished, oldest first, so a test can tell OTel really traced the calls. */
@Controller('otel')
export class OtelSpansController {
  constructor(@Inject(OTEL) private readonly otel: ConformanceOtel) {}

  @Get('spans')
  spans(): readonly SpanSummary[] {
    return this.otel.spans();
  }
}

/** The conformance app in interop mode: the same service, with `ContextOpenTelemetryModule.forRoot()`. */
@Module({})
export class ConformanceOtelModule {
  /** The app for the SDK `otel` that main.ts started. */
  static forRoot(otel: ConformanceOtel): DynamicModule {
    return {
      module: ConformanceOtelModule,
      imports: [ConformanceModule, ContextOpenTelemetryModule.forRoot()],
      controllers: [OtelSpansController],
      providers: [{ provide: OTEL, useValue: otel }],
    };
  }
}
