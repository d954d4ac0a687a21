import { patchClients } from './client.js';
import { loadOptionalDeps } from './optional-deps.js';
import { patchServers } from './server.js';

let installs = 0;
let undo: (() => void) | undefined;

/**
 * Installs transport propagation process-wide: every `ClientProxy.send`/`emit` and gRPC service
 * call made inside a context carries it, and every message handler registered afterwards unwraps
 * the fallback envelope. `ContextMicroservicesModule` calls this for you; call it yourself only
 * without the module (the server side then still needs the module to restore the context).
 * Reference-counted: the returned function undoes one install; the last one restores Nest's methods.
 *
 * @example
 * const uninstall = await installMicroservicesPropagation();
 */
export async function installMicroservicesPropagation(): Promise<() => void> {
  if (installs++ === 0) {
    const clients = patchClients();
    const servers = patchServers();
    undo = () => {
      clients();
      servers();
    };
  }
  await loadOptionalDeps();
  let done = false;
  return () => {
    if (done) return;
    done = true;
    if (--installs === 0) {
      undo?.();
      undo = undefined;
    }
  };
}
