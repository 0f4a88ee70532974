import { type Insertable, sql } from 'kysely';
import type { Dialect } from './dialect.js';
import type { Executor, StoreTransaction } from './executor.js';
import type { SignatureRow, SignaturesTable, Signer, SignersTable } from './schema.js';

export type NewSigner = Insertable<SignersTable>;
export type NewSignature = Insertable<SignaturesTable>;

// ---- the signing lock ----

/** Serialises signer and signature changes across runners (PostgreSQL); an arbitrary constant. */
const SIGNING_LOCK_KEY = 0x7661_6c67;

/**
 * Take the signing write lock in `trx`, first thing in it: the checks it then reads stay true until
 * it commits, and the audit append never meets a stale snapshot.
 */
export async function lockSigning(trx: StoreTransaction, dialect: Dialect): Promise<void> {
  if (dialect === 'postgres') await sql`select pg_advisory_xact_lock(${SIGNING_LOCK_KEY})`.execute(trx);
  // SQLite: a write first takes the write lock (it touches no row).
  else await sql`update signers set id = id where 0`.execute(trx);
}

// ---- signers: registered keys, revocable, never deleted ----

/** Every signer, revoked ones included, oldest first. */
export function allSigners(db: Executor): Promise<Signer[]> {
  return db.selectFrom('signers').selectAll().orderBy('id').execute();
}

/** The signer registered with this key id, revoked or not. */
export function findSigner(db: Executor, keyId: string): Promise<Signer | undefined> {
  return db.selectFrom('signers').selectAll().where('key_id', '=', keyId).executeTakeFirst();
}

export function insertSigner(db: Executor, signer: NewSigner): Promise<Signer> {
  return db.insertInto('signers').values(signer).returningAll().executeTakeFirstOrThrow();
}

/** Mark a signer revoked (the row stays); returns the updated row. */
export function markSignerRevoked(
  db: Executor,
  id: number,
  revocation: { at: number; by: string; reason: string },
): Promise<Signer> {
  return db
    .updateTable('signers')
    .set({ revoked_at: revocation.at, revoked_by: revocation.by, revoke_reason: revocation.reason })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

// ---- signatures: signed documents as submitted, append-only ----

/** Every recorded signature, oldest first. */
export function allSignatures(db: Executor): Promise<SignatureRow[]> {
  return db.selectFrom('signatures').selectAll().orderBy('id').execute();
}

/** How many signatures were recorded with this key. */
export async function countSignaturesByKey(db: Executor, keyId: string): Promise<number> {
  const { count } = await db
    .selectFrom('signatures')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('key_id', '=', keyId)
    .executeTakeFirstOrThrow();
  return Number(count);
}

/** Record a signature; returns its id. */
export async function insertSignature(db: Executor, signature: NewSignature): Promise<number> {
  const row = await db.insertInto('signatures').values(signature).returning('id').executeTakeFirstOrThrow();
  return Number(row.id);
}
