import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';
import { columnTypes } from './columns.js';

/**
 * The go-live gates: registered signers (role, name, Ed25519 public key; revocable, never deleted)
 * and the signed documents (sign-offs, attestations, the CEO's activation, amendments), each kept
 * with its exact signed bytes. Evidence of verified items lives in the audit chain (looked up by
 * action, hence the index). The worker's heartbeat now carries its heap limit (gate 4).
 */
export function gates(dialect: Dialect): Migration {
  const { pk, big, id } = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('signers')
        .addColumn('id', pk, id)
        .addColumn('role', 'text', (c) =>
          c
            .notNull()
            .check(sql`role in ('ceo', 'cfo', 'general_counsel', 'risk_officer', 'head_of_operations')`),
        )
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('public_key', 'text', (c) => c.notNull())
        // SHA-256 of the raw public key, hex: how a signed document names its key.
        .addColumn('key_id', 'text', (c) => c.notNull().unique())
        .addColumn('added_at', big, (c) => c.notNull())
        .addColumn('added_by', 'text', (c) => c.notNull())
        .addColumn('revoked_at', big)
        .addColumn('revoked_by', 'text')
        .addColumn('revoke_reason', 'text')
        .execute();

      await db.schema
        .createTable('signatures')
        .addColumn('id', pk, id)
        .addColumn('kind', 'text', (c) =>
          c.notNull().check(sql`kind in ('signoff', 'attestation', 'activation', 'amendment')`),
        )
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('gate', 'integer')
        .addColumn('item', 'text')
        .addColumn('policy_hash', 'text', (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        // The exact bytes signed (canonical JSON of every field above, the date and the comments).
        .addColumn('document', 'text', (c) => c.notNull())
        .addColumn('signature', 'text', (c) => c.notNull())
        .addColumn('recorded_at', big, (c) => c.notNull())
        .addColumn('recorded_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('signatures_by_kind')
        .on('signatures')
        .columns(['kind', 'role', 'gate', 'item'])
        .execute();

      // The registry and the signed documents are append-only like the audit chain: a signer is
      // never deleted or edited, a revocation is final (it cannot be cleared to revive a key's
      // signatures), and a recorded document never changes or disappears.
      for (const statement of dialect === 'sqlite' ? SQLITE_TRIGGERS : POSTGRES_TRIGGERS) {
        await sql.raw(statement).execute(db);
      }

      await db.schema.createIndex('audit_log_action').on('audit_log').columns(['action', 'seq']).execute();
      await db.schema.alterTable('heartbeats').addColumn('heap_limit_bytes', big).execute();
    },
  };
}

const SIGNERS_FIXED =
  'valhalla: a signer is never deleted or edited, and a revocation is final (revoke and add a new key)';
const SIGNATURES_FIXED = 'valhalla: a recorded signature is never changed or deleted';

const SQLITE_TRIGGERS = [
  `create trigger signers_no_delete before delete on signers
   begin select raise(abort, '${SIGNERS_FIXED}'); end`,
  `create trigger signers_only_revoked before update on signers
   when old.revoked_at is not null or new.revoked_at is null
     or new.role is not old.role or new.name is not old.name or new.public_key is not old.public_key
     or new.key_id is not old.key_id or new.added_at is not old.added_at or new.added_by is not old.added_by
   begin select raise(abort, '${SIGNERS_FIXED}'); end`,
  `create trigger signatures_no_update before update on signatures
   begin select raise(abort, '${SIGNATURES_FIXED}'); end`,
  `create trigger signatures_no_delete before delete on signatures
   begin select raise(abort, '${SIGNATURES_FIXED}'); end`,
];

const POSTGRES_TRIGGERS = [
  `create function valhalla_signers_guard() returns trigger language plpgsql as $$
   begin
     if tg_op <> 'UPDATE' or old.revoked_at is not null or new.revoked_at is null
        or new.role is distinct from old.role or new.name is distinct from old.name
        or new.public_key is distinct from old.public_key or new.key_id is distinct from old.key_id
        or new.added_at is distinct from old.added_at or new.added_by is distinct from old.added_by then
       raise exception '${SIGNERS_FIXED}' using errcode = 'insufficient_privilege';
     end if;
     return new;
   end $$`,
  `create trigger signers_guard before update or delete on signers
   for each row execute function valhalla_signers_guard()`,
  `create trigger signers_no_truncate before truncate on signers
   for each statement execute function valhalla_signers_guard()`,
  `create function valhalla_signatures_fixed() returns trigger language plpgsql as $$
   begin
     raise exception '${SIGNATURES_FIXED}' using errcode = 'insufficient_privilege';
   end $$`,
  `create trigger signatures_fixed before update or delete on signatures
   for each row execute function valhalla_signatures_fixed()`,
  `create trigger signatures_no_truncate before truncate on signatures
   for each statement execute function valhalla_signatures_fixed()`,
];
