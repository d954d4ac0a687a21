export { ContextMicroservicesModule, MicroservicesPropagation } from './module.js';
export { installMicroservicesPropagation, type ContextMicroservicesOptions } from './install.js';
export { propagateClientContext, type ClientPropagationOptions } from './client.js';
export { CONTEXT_ENVELOPE_KEY, type ContextEnvelope } from './envelope.js';
