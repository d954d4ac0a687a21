/**
 * The shared logging helpers and types, exported once, from `nestjs-context/logger` (the pino and
 * winston subpaths export only the types their own functions take and return).
 */
export {
  createLogFields,
  type ContextFieldSelector,
  type LogFieldKeys,
  type LogFields,
  type LogFieldSource,
  type LogFieldsOptions,
  type LogFieldValue,
  RENAMED_FIELD_PREFIX,
} from './fields.js';
export { sanitizeLogValue } from './sanitize.js';
