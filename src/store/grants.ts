import { sql } from 'kysely';
import type { Store, StoreTransaction } from './executor.js';

/**
 * Role separation on PostgreSQL (docs/production.md). The OWNER role owns the schema, its tables and
 * triggers, and applies migrations; the APP role, which the runners connect as, reads and writes
 * what the product writes at run time, and no more. The audit chain and the signed documents are
 * records: the app role may add to them, never change, remove or truncate them, and since it owns
 * nothing it cannot drop or disable the triggers that refuse that to everyone else.
 *
 * The statements converge: they first take away whatever the app role held in the schema, so running
 * them again (after every migration: a new table gets its grants that way) gives the same result.
 */

export type GrantsErrorCode = 'INVALID_NAME' | 'GRANTS_REFUSED';

/** The grants could not be computed (a bad name) or were not applied (and nothing was changed). */
export class GrantsError extends Error {
  override readonly name = 'GrantsError';
  constructor(
    readonly code: GrantsErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isGrantsError(error: unknown): error is GrantsError {
  return error instanceof GrantsError;
}

/** A role or schema name: a lower-case SQL identifier, as `create role name` makes of an unquoted name. */
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

type TablePrivilege = 'select' | 'insert' | 'update' | 'delete';

/** What the app role gets on every table of the schema unless the table is listed below. */
const READ_WRITE: readonly TablePrivilege[] = ['select', 'insert', 'update', 'delete'];

/** Tables the app role may not freely change: the exact privileges it gets on each. */
export const RESTRICTED_TABLES: Readonly<Record<string, readonly TablePrivilege[]>> = {
  /** The audit chain: read and append, never UPDATE, DELETE or TRUNCATE. */
  audit_log: ['select', 'insert'],
  /** Signed documents are never changed or removed (their triggers refuse it too). */
  signatures: ['select', 'insert'],
  /** A signer is never removed; UPDATE is its revocation (the trigger allows only that). */
  signers: ['select', 'insert', 'update'],
  /** Migrations are the owner's: the app role only reads which are applied. */
  valhalla_migration: ['select'],
};

export interface GrantOptions {
  /** The schema holding the product's tables (`?schema=` of VALHALLA_DATABASE_URL, or public). */
  schema: string;
  /** The role the runners connect as. */
  appRole: string;
}

/** A name as a quoted identifier, after checking it is one the grants accept. */
export function quoteIdentifier(name: string, what: string): string {
  if (!IDENTIFIER.test(name) || name.startsWith('pg_')) {
    throw new GrantsError(
      'INVALID_NAME',
      `invalid ${what} ${JSON.stringify(name)}: must be a lower-case SQL identifier (a-z, 0-9, _; not pg_…)`,
    );
  }
  return `"${name}"`;
}

/** The statements that give `appRole` the run-time privileges on `schema`, in order. */
export function grantStatements(options: GrantOptions): string[] {
  const schema = quoteIdentifier(options.schema, 'schema name');
  const app = quoteIdentifier(options.appRole, 'role name');
  if (options.appRole === 'public') {
    throw new GrantsError('INVALID_NAME', 'the app role cannot be PUBLIC: create a role for the runners');
  }
  const list = (privileges: readonly TablePrivilege[]) => privileges.join(', ');
  return [
    // Start from nothing: a privilege granted by hand earlier (CREATE, TRUNCATE, TRIGGER…) goes too.
    `revoke all on all tables in schema ${schema} from ${app}`,
    `revoke all on all sequences in schema ${schema} from ${app}`,
    `revoke all on schema ${schema} from ${app}`,
    // Use the schema's objects; create none (no CREATE: no DDL at run time).
    `grant usage on schema ${schema} to ${app}`,
    `grant ${list(READ_WRITE)} on all tables in schema ${schema} to ${app}`,
    // bigserial keys: nextval needs USAGE.
    `grant usage, select on all sequences in schema ${schema} to ${app}`,
    ...Object.entries(RESTRICTED_TABLES).flatMap(([table, privileges]) => [
      `revoke all on ${schema}."${table}" from ${app}`,
      `grant ${list(privileges)} on ${schema}."${table}" to ${app}`,
    ]),
  ];
}

export interface AppliedGrants {
  schema: string;
  appRole: string;
  /** The role that owns the schema's tables. */
  owner: string;
  /** The connecting role that applied them (the owner, a member of it, or a superuser). */
  appliedBy: string;
  statements: string[];
}

/**
 * Apply `grantStatements` in one transaction as the connecting role, which must own the schema's
 * tables, then check the result from the catalog: the app role can neither change the audit chain
 * nor become its owner. Any problem rolls everything back and is reported with what to do.
 * `schema` defaults to the connection's current schema.
 */
export async function applyGrants(
  store: Store,
  options: { schema?: string; appRole: string },
): Promise<AppliedGrants> {
  if (store.dialect !== 'postgres') {
    throw new GrantsError(
      'GRANTS_REFUSED',
      'roles and grants are PostgreSQL features: an SQLite database is protected by its file permissions',
    );
  }
  return store.db.transaction().execute(async (trx) => {
    const schema =
      options.schema ??
      (await sql<{ schema: string | null }>`select current_schema() as schema`.execute(trx)).rows[0]?.schema;
    if (!schema) throw new GrantsError('GRANTS_REFUSED', 'no current schema: set ?schema= in the URL');
    const statements = grantStatements({ schema, appRole: options.appRole });

    const missing = (
      await sql<{ table: string }>`
        select t.name as table from unnest(${Object.keys(RESTRICTED_TABLES)}::text[]) as t(name)
        where not exists (
          select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
          where n.nspname = ${schema} and c.relname = t.name)`.execute(trx)
    ).rows.map((r) => r.table);
    if (missing.length > 0) {
      throw new GrantsError(
        'GRANTS_REFUSED',
        `schema ${schema} has no ${missing.join(', ')}: run \`valhalla db migrate\` first, then the grants`,
      );
    }

    const who = (
      await sql<{ me: string; owner: string; owns: boolean; app: boolean }>`
        select current_user as me, pg_catalog.pg_get_userbyid(c.relowner) as owner,
          pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') as owns,
          exists (select 1 from pg_catalog.pg_roles where rolname = ${options.appRole}) as app
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname = ${schema} and c.relname = 'audit_log'`.execute(trx)
    ).rows[0]!;
    if (!who.owns) {
      throw new GrantsError(
        'GRANTS_REFUSED',
        `the role "${who.me}" does not own schema ${schema}'s tables: connect as their owner ("${who.owner}") to apply the grants`,
      );
    }
    if (!who.app) {
      throw new GrantsError(
        'GRANTS_REFUSED',
        `no role "${options.appRole}": create it first (create role ${options.appRole} login password '…')`,
      );
    }

    for (const statement of statements) await sql.raw(statement).execute(trx);

    const problems = await appRoleProblems(trx, schema, options.appRole);
    if (problems.length > 0) {
      throw new GrantsError(
        'GRANTS_REFUSED',
        `the role "${options.appRole}" could still change the audit chain or the schema: ${problems.join('; ')} (nothing was changed)`,
      );
    }
    return { schema, appRole: options.appRole, owner: who.owner, appliedBy: who.me, statements };
  });
}

/**
 * What the catalog says the app role can still do that it must not. Privileges can come from
 * elsewhere than these grants: membership of the owner or of pg_write_all_data, a grant to PUBLIC,
 * superuser, or CREATEROLE (on PostgreSQL 15 and older it can grant itself any role's membership).
 */
async function appRoleProblems(trx: StoreTransaction, schema: string, appRole: string): Promise<string[]> {
  const table = `"${schema}"."audit_log"`;
  const { rows } = await sql<{
    superuser: boolean;
    createrole: boolean;
    owner: string;
    member_of_owner: boolean;
    can_update: boolean;
    can_delete: boolean;
    can_truncate: boolean;
    can_trigger: boolean;
    can_create: boolean;
  }>`
    select r.rolsuper as superuser, r.rolcreaterole as createrole,
      pg_catalog.pg_get_userbyid(c.relowner) as owner,
      pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER') as member_of_owner,
      pg_catalog.has_table_privilege(r.oid, c.oid, 'UPDATE') as can_update,
      pg_catalog.has_table_privilege(r.oid, c.oid, 'DELETE') as can_delete,
      pg_catalog.has_table_privilege(r.oid, c.oid, 'TRUNCATE') as can_truncate,
      pg_catalog.has_table_privilege(r.oid, c.oid, 'TRIGGER') as can_trigger,
      pg_catalog.has_schema_privilege(r.oid, c.relnamespace, 'CREATE') as can_create
    from pg_catalog.pg_roles r, pg_catalog.pg_class c
    where r.rolname = ${appRole} and c.oid = ${table}::regclass`.execute(trx);
  const row = rows[0];
  if (row === undefined) return [`no role "${appRole}"`];
  const problems: string[] = [];
  if (row.superuser) problems.push('it is a superuser');
  if (row.createrole) problems.push('it has CREATEROLE (alter role … nocreaterole)');
  if (row.member_of_owner) problems.push(`it is, or is a member of, the owner "${row.owner}"`);
  const kept = [
    row.can_update && 'UPDATE',
    row.can_delete && 'DELETE',
    row.can_truncate && 'TRUNCATE',
    row.can_trigger && 'TRIGGER',
  ].filter((p): p is string => typeof p === 'string');
  if (kept.length > 0) {
    problems.push(
      `it still holds ${kept.join(', ')} on audit_log through another grant (PUBLIC, pg_write_all_data or a role it belongs to)`,
    );
  }
  if (row.can_create)
    problems.push(`it may CREATE in schema ${schema} (through PUBLIC or a role it belongs to)`);
  return problems;
}
