/**
 * `nestjs-context/event-emitter`: `@OnEvent()` listeners run in the emitter's context or a fresh one.
 * For `@nestjs/event-emitter`.
 *
 * @module nestjs-context/event-emitter
 */
import {
  Inject,
  Injectable,
  Module,
  Optional,
  SetMetadata,
  type DynamicModule,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService } from '@nestjs/core';
import { ContextHost } from '../../runtime/context-host.js';
import { storage } from '../../record/context-record.js';
import { AppBindings, MethodExplorer, type AnyMethod, type WrapperMaker } from '../../runtime/method-explorer.js';
import { hostOrThrow } from '../../runtime/apps.js';
import { markInternal } from '../../runtime/internal.js';

/**
 * How an `@OnEvent()` listener gets its context:
 * - `'inherit'`: the emitter's context (the same object, ids and trace) — or a fresh one when the
 *   event was emitted outside any context;
 * - `'fresh'`: a new context (fresh correlation id, new trace) for every call.
 */
export type ListenerContextMode = 'inherit' | 'fresh';

/** Options of {@link ContextEventEmitterModule.forRoot}. */
export interface ContextEventEmitterOptions {
  /** The mode of every listener that does not say otherwise with {@link ListenerContext}. Default: `'inherit'`. */
  mode?: ListenerContextMode;
}

/** The `ContextInit.source` of contexts opened for event listeners. */
const EVENT_CONTEXT_SOURCE = 'event';

/** Injection token of the {@link ContextEventEmitterOptions}. */
const CONTEXT_EVENT_EMITTER_OPTIONS = Symbol.for('nestjs-context:event-emitter-options');

/** The metadata key `@OnEvent()` of `@nestjs/event-emitter` (2–12) puts on a method. */
const EVENT_LISTENER_METADATA = 'EVENT_LISTENER_METADATA';
const MODE_METADATA = 'nestjs-context:listener-mode';
const TAG = Symbol.for('nestjs-context:event-emitter');
const MODES: readonly string[] = ['inherit', 'fresh'];

type MetadataReader = { getMetadata?(key: string, target: object): unknown };

interface Binding {
  host: ContextHost;
  mode: ListenerContextMode;
}

/** Listener classes (and their instances) → the apps that imported this integration, with their mode. */
const bindings = new AppBindings<Binding>();

/**
 * Chooses the context mode of one `@OnEvent()` listener, overriding the module's `mode`.
 * Put it above or below `@OnEvent()`.
 *
 * @example
 * \@OnEvent('order.placed') \@ListenerContext('fresh')
 * audit(event: OrderPlaced) {}
 */
export function ListenerContext(mode: ListenerContextMode): MethodDecorator {
  if (!MODES.includes(mode)) {
    throw new TypeError(`@ListenerContext(): mode must be 'inherit' or 'fresh', got ${JSON.stringify(mode)}.`);
  }
  return SetMetadata(MODE_METADATA, mode);
}

function metadata(key: string, fn: object): unknown {
  return (Reflect as unknown as MetadataReader).getMetadata?.(key, fn);
}

/**
 * Finds the `@OnEvent()` methods of the app's providers and controllers and wraps them while the
 * app is being built (before `@nestjs/event-emitter` subscribes them). @internal
 */
@Injectable()
class ContextEventExplorer extends MethodExplorer<Binding> {
  constructor(
    discovery: DiscoveryService,
    @Optional() @Inject(ContextHost) host: ContextHost | undefined,
    @Optional() @Inject(CONTEXT_EVENT_EMITTER_OPTIONS) options: ContextEventEmitterOptions = {},
  ) {
    const mode = options?.mode ?? 'inherit';
    if (!MODES.includes(mode)) {
      throw new TypeError(
        `ContextEventEmitterModule.forRoot(): mode must be 'inherit' or 'fresh', got ${JSON.stringify(mode)}. Leave it out for 'inherit'.`,
      );
    }
    super(discovery, bindings, { host: hostOrThrow(host, 'ContextEventEmitterModule'), mode }, TAG);
    this.scan();
  }

  protected wrapperOf(_key: string, method: AnyMethod): WrapperMaker | undefined {
    return metadata(EVENT_LISTENER_METADATA, method) !== undefined ? wrapListener : undefined;
  }
}

/** An `@OnEvent()` listener, run in the emitter's context or a fresh one of the app its object belongs to. */
function wrapListener(original: AnyMethod): AnyMethod {
  const own = metadata(MODE_METADATA, original) as ListenerContextMode | undefined;
  return function (this: unknown, ...args: unknown[]) {
    // Only objects of an app that imported this integration get a context from it.
    const binding = bindings.of(this);
    if (binding === undefined || binding.host.closed) return original.apply(this, args);
    // EventEmitter2 runs `{ async: true }` / `nextTick` / `promisify` listeners from setImmediate,
    // process.nextTick or a promise: all of them carry AsyncLocalStorage, so the emitter's context
    // is still the active one here.
    if ((own ?? binding.mode) === 'inherit' && storage.getStore() !== undefined) return original.apply(this, args);
    return storage.run(binding.host.create({ source: EVENT_CONTEXT_SOURCE }), () => original.apply(this, args));
  };
}

/**
 * Runs `@OnEvent()` listeners inside the emitter's context — sync and async listeners, `{ async: true }`
 * included — or, with `mode: 'fresh'` (per listener: `@ListenerContext('fresh')`), inside a fresh
 * context per call. Events emitted outside any context get a fresh context per listener call.
 *
 * @example
 * \@Module({ imports: [ContextModule.forRoot(MyContext), EventEmitterModule.forRoot(), ContextEventEmitterModule.forRoot()] })
 */
@Module({})
export class ContextEventEmitterModule {
  /** Registers the integration (global). */
  static forRoot(options: ContextEventEmitterOptions = {}): DynamicModule {
    return {
      module: ContextEventEmitterModule,
      global: true,
      imports: [DiscoveryModule],
      providers: [{ provide: CONTEXT_EVENT_EMITTER_OPTIONS, useValue: options }, ContextEventExplorer],
    };
  }
}

/* Left out of instrumentation that wraps every provider (nestjs-context/observe). */
markInternal(ContextEventExplorer, ContextEventEmitterModule);
