export * from './context-init.interface.js';
export * from './context-module-options.interface.js';
export * from './propagation-options.interface.js';
export * from './trace-info.interface.js';
