import type { ContextHost } from '../../context.host.js';

/** The `ContextHost` of every app in this process that imported `ContextMicroservicesModule`. @internal */
const hosts = new Set<ContextHost>();

/** Registers an app's host; returns the function that removes it again. @internal */
export function registerHost(host: ContextHost): () => void {
  hosts.add(host);
  return () => {
    hosts.delete(host);
  };
}

/**
 * The host message handlers open their context with when Nest's global interceptor may not run
 * (a hybrid app's `connectMicroservice()` without `inheritAppConfig: true`): the app's own when the
 * process has exactly one such app; otherwise `undefined` and the interceptor does it. @internal
 */
export function soleHost(): ContextHost | undefined {
  if (hosts.size !== 1) return undefined;
  for (const host of hosts) return host;
  return undefined;
}
