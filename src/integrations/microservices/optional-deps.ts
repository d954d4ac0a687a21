/**
 * Transport libraries are optional peer dependencies: they are loaded lazily (dynamic `import()`),
 * only to build the one metadata object each needs, and their absence is not an error (the
 * transport then falls back to the envelope, or is simply not in use).
 */

/** A NATS `MsgHdrs` as far as this integration uses it. @internal */
export interface NatsHeadersLike {
  get(name: string): string;
  set(name: string, value: string): void;
  has(name: string): boolean;
  keys(): string[];
  values(name: string): string[];
}

/** A gRPC `Metadata` as far as this integration uses it. @internal */
export interface GrpcMetadataLike {
  get(name: string): unknown[];
  set(name: string, value: string): void;
  getMap(): Record<string, unknown>;
  clone(): GrpcMetadataLike;
}

/** The lazily loaded factories. @internal */
export const loaded: {
  natsHeaders?: () => NatsHeadersLike;
  GrpcMetadata?: new () => GrpcMetadataLike;
} = {};

type Module = Record<string, unknown> & { default?: Record<string, unknown> };

async function tryImport(name: string): Promise<Module | undefined> {
  try {
    return (await import(name)) as Module;
  } catch {
    return undefined;
  }
}

function pick<V>(mod: Module | undefined, key: string): V | undefined {
  if (mod === undefined) return undefined;
  const value = mod[key] ?? mod.default?.[key];
  return typeof value === 'function' ? (value as V) : undefined;
}

let loading: Promise<void> | undefined;

/**
 * Loads NATS' `headers()` (from `@nats-io/transport-node`, what @nestjs/microservices 12 uses, or
 * `nats`, what 11 uses) and gRPC's `Metadata` class, once. Never rejects. @internal
 */
export function loadOptionalDeps(): Promise<void> {
  return (loading ??= (async () => {
    const [natsNode, natsLegacy, grpc] = await Promise.all([
      tryImport('@nats-io/transport-node'),
      tryImport('nats'),
      tryImport('@grpc/grpc-js'),
    ]);
    loaded.natsHeaders = pick(natsNode, 'headers') ?? pick(natsLegacy, 'headers');
    loaded.GrpcMetadata = pick(grpc, 'Metadata');
  })());
}
