import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * The go-live gates: registered signers (role, name, Ed25519 public key; revocable, never deleted)
 * and the signed documents (sign-offs, attestations, the CEO's activation, amendments), each kept
 * with its exact signed bytes. Evidence of verified items lives in the audit chain (looked up by
 * action, hence the index). The worker's heartbeat now carries its heap limit (gate 4).
 */
export function gates(dialect: Dialect): Migration {
  const pk = dialect === 'postgres' ? 'bigserial' : 'integer';
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  const id = (c: import('kysely').ColumnDefinitionBuilder) =>
    dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey();
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

      await db.schema.createIndex('audit_log_action').on('audit_log').columns(['action', 'seq']).execute();
      await db.schema.alterTable('heartbeats').addColumn('heap_limit_bytes', big).execute();
    },
  };
}
