export * from './context-init.interface.js';
export * from './context-module-options.interface.js';
