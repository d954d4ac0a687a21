/**
 * `nestjs-context/microservices`: messages of `@nestjs/microservices` clients carry the context, and
 * message handlers run inside the context restored from them. Peer dependency: `@nestjs/microservices`.
 *
 * @module nestjs-context/microservices
 */
export { ContextMicroservicesModule } from './module.js';
export { propagateGlobalClients, type ContextMicroservicesOptions } from './install.js';
export { propagateContext, type ClientPropagationOptions, type MessageClientLike } from './client.js';
export { CONTEXT_ENVELOPE_KEY, type ContextEnvelope } from './envelope.js';
