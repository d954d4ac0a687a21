export { ContextMicroservicesModule, MicroservicesPropagation } from './module.js';
export { installMicroservicesPropagation } from './install.js';
export { propagateClientContext } from './client.js';
export { CONTEXT_ENVELOPE_KEY, type ContextEnvelope } from './envelope.js';
