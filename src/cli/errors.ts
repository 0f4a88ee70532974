import {
  type AppErrorCode,
  type DatabaseAdminErrorCode,
  isAppError,
  isDatabaseAdminError,
} from '../app/index.js';
import { isConfigError } from '../config/index.js';
import { isPrivateFileError } from '../files/index.js';
import { isIngestFileError } from '../ingest/index.js';
import { isStoreError } from '../store/index.js';
import { EXIT, type ExitCode } from './output.js';

/** The exit code of each app error: a refusal by the installation's own rules is 3, like the policy's. */
const APP_ERROR_EXIT: Readonly<Record<AppErrorCode, ExitCode>> = {
  NOT_INITIALIZED: EXIT.failure,
  SECRET_CHANGED: EXIT.failure,
  DEDUP_RULE_CHANGED: EXIT.refused,
  AUDIT_CHAIN_BROKEN: EXIT.failure,
  UPLOADS_BUSY: EXIT.failure,
};

/** The exit code of each database administration error (`db migrate`, `db grants`). */
const ADMIN_ERROR_EXIT: Readonly<Record<DatabaseAdminErrorCode, ExitCode>> = {
  NO_DATABASE: EXIT.failure,
  NO_ROLES: EXIT.refused,
  INVALID_NAME: EXIT.usage,
  GRANTS_REFUSED: EXIT.refused,
};

/** The exit code of an error the product knows (its message is safe to print), or null. */
export function errorExitCode(error: unknown): ExitCode | null {
  if (isConfigError(error)) return EXIT.refused;
  if (isAppError(error)) return APP_ERROR_EXIT[error.code];
  if (isDatabaseAdminError(error)) return ADMIN_ERROR_EXIT[error.code];
  if (isIngestFileError(error) || isStoreError(error) || isPrivateFileError(error)) return EXIT.failure;
  return null;
}
