/**
 * The signers: registering a stakeholder's public key for a role, revoking it, listing them; and
 * the signing lock every write of a signer or a signature takes (SigningDeps, locked).
 */
import type { AuditLog } from '../audit/index.js';
import { refuseContactData } from '../pii/index.js';
import type { StoreDb, StoreTransaction } from '../store/index.js';
import {
  allSigners,
  countSignaturesByKey,
  type Dialect,
  findSigner,
  insertSigner,
  lockSigning,
  markSignerRevoked,
  type Signer,
  type SignerRole,
} from '../store/index.js';
import { ROLES } from './document.js';
import { keyIdOf, normalizePublicKey } from './keys.js';

export interface SigningDeps {
  /** The database, or a transaction to join (on SQLite, one that has not read yet). */
  db: StoreDb;
  dialect: Dialect;
  audit: AuditLog;
}

/**
 * Run `work` in a transaction (or the caller's) that holds the write lock from its start: the
 * checks it reads stay true until it commits, and the audit append never meets a stale snapshot.
 */
export async function locked<T>(deps: SigningDeps, work: (trx: StoreTransaction) => Promise<T>): Promise<T> {
  const run = async (trx: StoreTransaction) => {
    await lockSigning(trx, deps.dialect);
    return work(trx);
  };
  if (deps.db.isTransaction) return run(deps.db as StoreTransaction);
  return deps.db.transaction().execute(run);
}

export type SigningOutcome<T> = ({ ok: true } & T) | { ok: false; reason: string };

/** Every signer, revoked ones included, oldest first. */
export function listSigners(db: StoreDb): Promise<Signer[]> {
  return allSigners(db);
}

/** Register a signer's public key for a role (audited `signer.added`). A malformed key throws. */
export async function addSigner(
  deps: SigningDeps,
  input: { role: SignerRole; name: string; publicKeyPem: string },
  context: { actor: string; now: number },
): Promise<SigningOutcome<{ signer: Signer }>> {
  const publicKey = normalizePublicKey(input.publicKeyPem);
  const keyId = keyIdOf(publicKey);
  const name = input.name.trim();
  if (!(ROLES as readonly string[]).includes(input.role))
    return { ok: false, reason: `no role ${input.role}` };
  if (name === '' || name !== input.name) {
    return { ok: false, reason: 'the name must not be empty or start or end with spaces' };
  }
  return locked(deps, async (trx) => {
    const existing = await findSigner(trx, keyId);
    if (existing) {
      return {
        ok: false,
        reason: `the key ${keyId} is already registered (${existing.role}, ${existing.name}${existing.revoked_at === null ? '' : ', revoked'}): a key is never reused`,
      };
    }
    await deps.audit.append(trx, {
      actor: context.actor,
      action: 'signer.added',
      subject: keyId,
      details: { role: input.role, name, keyId },
    });
    const signer = await insertSigner(trx, {
      role: input.role,
      name,
      public_key: publicKey,
      key_id: keyId,
      added_at: context.now,
      added_by: context.actor,
      revoked_at: null,
      revoked_by: null,
      revoke_reason: null,
    });
    return { ok: true, signer };
  });
}

/**
 * Revoke a signer's key (audited `signer.revoked`). The row stays; every signature made with the key
 * is void from now on (validSignatures reports it), so its sign-offs must be signed again.
 */
export async function revokeSigner(
  deps: SigningDeps,
  input: { keyId: string; reason: string },
  context: { actor: string; now: number },
): Promise<SigningOutcome<{ signer: Signer; voided: number }>> {
  const reason = input.reason.trim();
  if (reason === '') return { ok: false, reason: 'a revocation needs a reason' };
  const contactData = refuseContactData(reason, 'the reason');
  if (contactData !== null) return { ok: false, reason: contactData };
  return locked(deps, async (trx) => {
    const signer = await findSigner(trx, input.keyId);
    if (!signer) return { ok: false, reason: `no signer with key id ${input.keyId}` };
    if (signer.revoked_at !== null) {
      return {
        ok: false,
        reason: `the key ${input.keyId} was already revoked at ${new Date(signer.revoked_at).toISOString()}`,
      };
    }
    const voided = await countSignaturesByKey(trx, input.keyId);
    await deps.audit.append(trx, {
      actor: context.actor,
      action: 'signer.revoked',
      subject: input.keyId,
      details: { role: signer.role, name: signer.name, keyId: input.keyId, reason, voidedSignatures: voided },
    });
    const updated = await markSignerRevoked(trx, signer.id, {
      at: context.now,
      by: context.actor,
      reason,
    });
    return { ok: true, signer: updated, voided };
  });
}
