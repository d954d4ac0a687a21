import { checkForceEnvelope, patchClients, requestEnvelope } from './client.js';
import { loadOptionalDeps } from './optional-deps.js';
import { patchServers } from './server.js';

/** Options of `ContextMicroservicesModule.forRoot()` and {@link installMicroservicesPropagation}. */
export interface ContextMicroservicesOptions {
  /**
   * Send TCP and Redis messages in the payload envelope (`{ "__nestjs_context__": {...}, "data": ... }`)
   * even where the installed Nest (12+) carries the context in `packet.metadata` — for a fleet in
   * which NestJS 12 senders talk to NestJS 11 receivers, which drop `packet.metadata`. Receivers of
   * any version read both, so turn it off once every receiver runs NestJS 12. MQTT 3.1.1 always uses
   * the envelope; RabbitMQ, NATS, MQTT 5 and gRPC keep their own headers either way. Default `false`.
   *
   * The install is process-wide: while any app (or direct install) that asked for it is running,
   * every TCP/Redis client in the process uses the envelope — the envelope wins, since a receiver
   * that reads metadata also reads envelopes but not the other way round.
   */
  forceEnvelope?: boolean;
}

let installs = 0;
let undo: (() => void) | undefined;

/**
 * Installs transport propagation process-wide: every `ClientProxy.send`/`emit` and gRPC service
 * call made inside a context carries it, and every message handler registered afterwards unwraps
 * the fallback envelope. `ContextMicroservicesModule` calls this for you; call it yourself only
 * without the module (the server side then still needs the module to restore the context).
 * Reference-counted: the returned function undoes one install; the last one restores Nest's methods.
 * Throws `ContextConfigError` (synchronously) for invalid options.
 *
 * @example
 * const uninstall = await installMicroservicesPropagation();
 */
export function installMicroservicesPropagation(options?: ContextMicroservicesOptions): Promise<() => void> {
  const forceEnvelope = checkForceEnvelope(options, 'installMicroservicesPropagation()');
  if (installs++ === 0) {
    const clients = patchClients();
    const servers = patchServers();
    undo = () => {
      clients();
      servers();
    };
  }
  const releaseEnvelope = forceEnvelope ? requestEnvelope() : undefined;
  let done = false;
  const uninstall = (): void => {
    if (done) return;
    done = true;
    releaseEnvelope?.();
    if (--installs === 0) {
      undo?.();
      undo = undefined;
    }
  };
  return loadOptionalDeps().then(() => uninstall);
}
