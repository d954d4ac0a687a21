export { ContextMicroservicesModule } from './module.js';
export { propagateGlobalClients, type ContextMicroservicesOptions } from './install.js';
export { propagateContext, type ClientPropagationOptions } from './client.js';
export { CONTEXT_ENVELOPE_KEY, type ContextEnvelope } from './envelope.js';
