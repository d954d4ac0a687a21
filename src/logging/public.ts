/**
 * What every logging integration (`nestjs-context/logger`, `/pino`, `/winston`) exports besides its
 * own adapter: the shared field options and helpers, so each subpath is complete on its own.
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
