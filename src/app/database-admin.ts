import { existsSync } from 'node:fs';
import type { DatabaseTarget } from '../config/index.js';
import {
  type AppliedGrants,
  applyGrants,
  grantStatements,
  isGrantsError,
  migrateToLatest,
  openStore,
  type Store,
} from '../store/index.js';

export type { AppliedGrants } from '../store/index.js';

/**
 * Database administration, run as the schema's OWNER role (docs/production.md): migrations, and the
 * grants of the role the runners connect as. These open the store without the app (no pseudonym
 * check, nothing audited: the installation may not exist yet) and never migrate implicitly.
 */
export type DatabaseAdminErrorCode =
  /** A SQLite file that does not exist: only `valhalla init` creates one. */
  | 'NO_DATABASE'
  /** Roles and grants on SQLite, which has none. */
  | 'NO_ROLES'
  /** A role or schema name that is not a plain lower-case SQL identifier. */
  | 'INVALID_NAME'
  /** The grants were not applied (and nothing was changed). */
  | 'GRANTS_REFUSED';

export class DatabaseAdminError extends Error {
  override readonly name = 'DatabaseAdminError';
  constructor(
    readonly code: DatabaseAdminErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isDatabaseAdminError(error: unknown): error is DatabaseAdminError {
  return error instanceof DatabaseAdminError;
}

/** The SQL that lets `appRole` read and write the schema's tables, and only read and append the chain. */
export function grantsScript(
  target: DatabaseTarget,
  appRole: string,
): { schema: string; statements: string[] } {
  if (target.kind !== 'postgres') throw noRoles();
  const schema = target.schema ?? 'public';
  return { schema, statements: translated(() => grantStatements({ schema, appRole })) };
}

/** Apply pending migrations (every runner stopped); with `appRole`, re-apply its grants afterwards. */
export async function migrateDatabase(
  target: DatabaseTarget,
  options: { appRole?: string } = {},
): Promise<{ applied: string[]; grants: AppliedGrants | null }> {
  const { appRole } = options;
  // A bad role name, or roles on SQLite, are refused before anything is migrated.
  if (appRole !== undefined) {
    translated(() => grantStatements({ schema: 'public', appRole }));
    if (target.kind !== 'postgres') throw noRoles();
  }
  return withOwnerStore(target, async (store) => {
    const applied = await migrateToLatest(store);
    const grants = appRole === undefined ? null : await grantsOn(store, target, appRole);
    return { applied, grants };
  });
}

/** Apply the grants of `appRole` as the connecting role (the schema owner), in one transaction. */
export async function applyDatabaseGrants(target: DatabaseTarget, appRole: string): Promise<AppliedGrants> {
  if (target.kind !== 'postgres') throw noRoles();
  return withOwnerStore(target, (store) => grantsOn(store, target, appRole));
}

async function withOwnerStore<T>(target: DatabaseTarget, work: (store: Store) => Promise<T>): Promise<T> {
  // SQLite: no file, no installation; only `valhalla init` makes one (PostgreSQL: the owner may
  // migrate a schema before the first `init`).
  if (target.kind === 'sqlite' && !existsSync(target.path)) {
    throw new DatabaseAdminError(
      'NO_DATABASE',
      `no database at ${target.path}; nothing was created: point at the installation with --data-dir DIR or VALHALLA_DATA_DIR, or create one with \`valhalla init\``,
    );
  }
  const store = await openStore(target, { migrate: false });
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

async function grantsOn(store: Store, target: DatabaseTarget, appRole: string): Promise<AppliedGrants> {
  const schema = target.kind === 'postgres' ? target.schema : undefined;
  try {
    return await applyGrants(store, { appRole, ...(schema ? { schema } : {}) });
  } catch (error) {
    throw asAdminError(error);
  }
}

function noRoles(): DatabaseAdminError {
  return new DatabaseAdminError(
    'NO_ROLES',
    'roles and grants are PostgreSQL features: the SQLite database is protected by its file permissions',
  );
}

function asAdminError(error: unknown): unknown {
  return isGrantsError(error) ? new DatabaseAdminError(error.code, error.message) : error;
}

function translated<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    throw asAdminError(error);
  }
}
