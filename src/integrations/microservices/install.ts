import { checkForceEnvelope, patchClients, requestEnvelope } from './client.js';
import { loadOptionalDeps } from './optional-deps.js';
import { patchServers } from './server.js';

/** Options of `ContextMicroservicesModule.forRoot()` and {@link propagateGlobalClients}. */
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

/** The process-wide install: how many references are taken, and how to remove the patches. */
interface InstallState {
  refs: number;
  undo: (() => void) | undefined;
}

const INSTALL_KEY = Symbol.for('nestjs-context:microservices-install');

/**
 * Shared by the ESM and CommonJS builds and by every copy of the package in the process, through a
 * registered symbol on `globalThis`: the patches live on Nest's prototypes, of which there is one
 * set, so there is one count. The last release (whichever build makes it) removes them.
 */
const install: InstallState = ((globalThis as { [INSTALL_KEY]?: InstallState })[INSTALL_KEY] ??= { refs: 0, undo: undefined });

/**
 * Takes one reference on the process-wide patches (`Server#addHandler`, `ServerGrpc#addHandler`,
 * `ListenersController#registerPatternHandlers`, the client methods), installing them on the first.
 * Returns the release, which does something once; the last release puts Nest's methods back. @internal
 */
export function acquirePropagation(): () => void {
  if (install.refs === 0) {
    const servers = patchServers();
    let clients: () => void;
    try {
      clients = patchClients();
    } catch (error) {
      servers();
      throw error;
    }
    install.undo = () => {
      clients();
      servers();
    };
  }
  install.refs++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--install.refs > 0) return;
    const undo = install.undo;
    install.refs = 0;
    install.undo = undefined;
    undo?.();
  };
}

/**
 * Installs transport propagation process-wide: every `ClientProxy.send`/`emit` and gRPC service
 * call made inside a context carries it, and every message handler registered afterwards unwraps
 * the fallback envelope. `ContextMicroservicesModule` calls this for you; call it yourself only
 * without the module (the server side then still needs the module to restore the context: a handler
 * opens its app's context only in an app that imports it).
 * Reference-counted once per process (shared by the ESM and CommonJS builds): the returned function
 * undoes one install; the last one, of any install or app, restores Nest's methods.
 * Throws `ContextConfigError` (synchronously) for invalid options.
 *
 * @example
 * const uninstall = await propagateGlobalClients();
 */
export function propagateGlobalClients(options?: ContextMicroservicesOptions): Promise<() => void> {
  const forceEnvelope = checkForceEnvelope(options, 'propagateGlobalClients()');
  const release = acquirePropagation();
  const releaseEnvelope = forceEnvelope ? requestEnvelope() : undefined;
  let done = false;
  const uninstall = (): void => {
    if (done) return;
    done = true;
    releaseEnvelope?.();
    release();
  };
  return loadOptionalDeps().then(() => uninstall);
}
