/**
 * The signatures: recording a signed document after every check (or refusing it, audited), every
 * recorded signature re-verified on each read (validSignatures), and the limits the valid documents
 * approve (approvedLimits).
 */
import { createHash, createPublicKey } from 'node:crypto';
import type { z } from 'zod';
import type { AuditAction } from '../policy/index.js';
import type { StoreDb } from '../store/index.js';
import {
  allSignatures,
  allSigners,
  auditDetailsOf,
  findSigner,
  insertSignature,
  type SignatureKind,
  type SignatureRow,
  type Signer,
} from '../store/index.js';
import { SIGNOFF_ROLES } from './catalogue.js';
import {
  describeIssues,
  documentBytes,
  fieldsRefusal,
  isLegacy,
  kindRefusal,
  LEGACY_REASON,
  type SignedDocument,
  signedSchema,
  unsignedSchema,
  verifyBytes,
  verifyDocument,
} from './document.js';
import {
  describeDifference,
  lowerLimits,
  type ManifestLimits,
  manifestDifferences,
  manifestHash,
  type ReleaseManifest,
} from './manifest.js';
import { locked, type SigningDeps, type SigningOutcome } from './signers.js';

const KIND_WORDS: Readonly<Record<SignatureKind, string>> = {
  signoff: 'sign-off',
  attestation: 'attestation',
  activation: 'activation',
  amendment: 'amendment',
};

/** The most of any one field of a submitted document that is copied into the audit chain. */
const AUDITED_FIELD_MAX = 200;

/**
 * Validate a signed document and record it (audited `signature.recorded`), or refuse it (audited
 * `signature.refused`, nothing else written). The checks: a registered, unrevoked key; a signature
 * that verifies over every field; the key's registered role and name; the current policy hash; the
 * date and the kind's rules (fieldsRefusal); an activation only after valid sign-offs of all five
 * roles; no valid duplicate (same kind, role, gate, item and policy hash).
 */
export async function recordSignature(
  deps: SigningDeps,
  doc: SignedDocument,
  context: { actor: string; now: number; manifest: ReleaseManifest | null },
): Promise<SigningOutcome<{ id: number }>> {
  return locked(deps, async (trx) => {
    const parsed = signedSchema.safeParse(doc);
    // What the audit says of a refused document: its plain fields, never the signature.
    const raw = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>;
    // A refused document is not trusted: its fields reach the audit chain cut to a bounded length.
    const text = (key: string) =>
      typeof raw[key] === 'string' ? (raw[key] as string).slice(0, AUDITED_FIELD_MAX) : null;
    const subject = text('keyId');
    const summary = {
      kind: text('kind'),
      role: text('role'),
      name: text('name'),
      gate: typeof raw.gate === 'number' && Number.isFinite(raw.gate) ? raw.gate : null,
      item: text('item'),
      keyId: subject,
      policyHash: text('policyHash'),
      date: text('date'),
    };
    const refuse = async (reason: string) => {
      await deps.audit.append(trx, {
        actor: context.actor,
        action: 'signature.refused',
        subject,
        details: { ...summary, reason },
      });
      return { ok: false as const, reason };
    };

    if (isLegacy(doc)) return refuse(LEGACY_REASON);
    if (!parsed.success) return refuse(`malformed document: ${describeIssues(parsed.error)}`);
    const signed = parsed.data;
    const running = context.manifest;
    if (running === null) return refuse(NO_INSTALLATION_REASON);
    const signer = await findSigner(trx, signed.keyId);
    if (!signer) return refuse(`the key ${signed.keyId} is not a registered signer's`);
    if (signer.revoked_at !== null) return refuse(revokedReason(signer));
    if (!verifyDocument(signed, signer.public_key)) {
      return refuse(
        'the signature does not verify: the document was changed after it was signed, or signed with another key',
      );
    }
    if (signer.role !== signed.role) {
      return refuse(`the key is registered to the ${signer.role}, the document says ${signed.role}`);
    }
    if (signer.name !== signed.name) {
      return refuse(
        `the key is registered to ${JSON.stringify(signer.name)}, the document names ${JSON.stringify(signed.name)}`,
      );
    }
    const elsewhere = installationProblem(signed.manifest, running);
    if (elsewhere !== null) return refuse(elsewhere);
    if (signed.policyHash !== running.policyHash) {
      return refuse(
        `signed against policy ${signed.policyHash.slice(0, 12)}…, the current policy is ${running.policyHash.slice(0, 12)}…: sign the current policy`,
      );
    }
    // An amendment changes the limits and nothing else; every other document approves the running
    // manifest as it is, limits included.
    const differences = manifestDifferences(signed.manifest, running, {
      limits: signed.kind !== 'amendment',
    });
    if (differences.length > 0) {
      return refuse(
        `signed over another release manifest than the running one: ${differences.map(describeDifference).join('; ')}; sign the running manifest (valhalla gates manifest shows it)`,
      );
    }
    const problem = fieldsRefusal(signed, context.now);
    if (problem !== null) return refuse(problem);

    const { valid } = await validSignatures(trx, running);
    if (signed.kind === 'activation') {
      const signedOff = new Set(valid.filter((r) => r.kind === 'signoff').map((r) => r.role));
      const missing = SIGNOFF_ROLES.filter((role) => !signedOff.has(role));
      if (missing.length > 0) {
        return refuse(
          `the activation needs valid sign-offs of all five roles first; missing: ${missing.join(', ')}`,
        );
      }
    }
    // An activation older than a sign-off that counts now no longer counts (the gates check the
    // order): the CEO activates again, so only a later activation is a duplicate.
    const lastSignoff = Math.max(0, ...valid.filter((r) => r.kind === 'signoff').map((r) => Number(r.id)));
    const duplicate = valid.find(
      (r) =>
        (r.kind !== 'activation' || Number(r.id) > lastSignoff) &&
        r.kind === signed.kind &&
        r.role === signed.role &&
        r.gate === signed.gate &&
        r.item === signed.item &&
        r.policy_hash === signed.policyHash &&
        manifestHash(documentManifest(r)) === manifestHash(signed.manifest),
    );
    if (duplicate) {
      return refuse(
        `a valid ${KIND_WORDS[signed.kind]} like this one is already recorded (#${duplicate.id})`,
      );
    }

    const document = documentBytes(signed);
    await deps.audit.append(trx, {
      actor: context.actor,
      action: 'signature.recorded',
      subject,
      details: {
        ...summary,
        installationId: signed.manifest.installationId,
        manifestSha256: manifestHash(signed.manifest),
        // An amendment's whole point: the limits it approves, in the chain.
        ...(signed.kind === 'amendment' ? { limits: signed.manifest.limits } : {}),
        documentSha256: createHash('sha256').update(document).digest('hex'),
      },
    });
    const id = await insertSignature(trx, {
      kind: signed.kind,
      role: signed.role,
      name: signed.name,
      gate: signed.gate,
      item: signed.item,
      policy_hash: signed.policyHash,
      key_id: signed.keyId,
      document,
      signature: signed.signature,
      recorded_at: context.now,
      recorded_by: context.actor,
    });
    return { ok: true, id };
  });
}

const NO_INSTALLATION_REASON =
  'this store has no installation id (it was never initialised): run `valhalla init`, then sign over its manifest';

function installationProblem(signed: ReleaseManifest, running: ReleaseManifest): string | null {
  return signed.installationId === running.installationId
    ? null
    : `signed for installation ${signed.installationId}, and this is installation ${running.installationId}: a document approves one installation only`;
}

/** The manifest a stored (valid) row's document carries. */
export function documentManifest(row: SignatureRow): ReleaseManifest {
  return (JSON.parse(row.document) as { manifest: ReleaseManifest }).manifest;
}

function revokedReason(signer: Signer): string {
  return `the key ${signer.key_id} (${signer.role}, ${signer.name}) was revoked at ${new Date(signer.revoked_at ?? 0).toISOString()} by ${signer.revoked_by}: ${signer.revoke_reason}`;
}

/** Column ↔ field pairs that the stored document must agree with. */
const COLUMN_FIELDS = [
  ['kind', 'kind'],
  ['role', 'role'],
  ['name', 'name'],
  ['gate', 'gate'],
  ['item', 'item'],
  ['policy_hash', 'policyHash'],
  ['key_id', 'keyId'],
] as const;

/**
 * Every recorded signature, re-verified now: valid ones, and invalid ones with the reason. Nothing
 * recorded is trusted: the key must still be registered and unrevoked, the row must match its signer
 * and its stored document, the policy hash must be the current one, and the signature must verify
 * over the stored bytes.
 */
export async function validSignatures(
  db: StoreDb,
  running: ReleaseManifest | null,
): Promise<{ valid: SignatureRow[]; invalid: { row: SignatureRow; reason: string }[] }> {
  const [signers, rows, changes] = await Promise.all([
    allSigners(db),
    allSignatures(db),
    auditDetailsOf(db, 'policy.changed' satisfies AuditAction),
  ]);
  const policyHash = running?.policyHash ?? '';
  // A policy the installation moved away from (a `policy.changed` from its hash) voids what was
  // signed over it before; if the policy returns to that hash, those signatures stay void.
  let abandonedAt: number | null = null;
  for (const change of changes) {
    const from = (JSON.parse(change.details) as { from?: string | null }).from;
    if (from === policyHash) abandonedAt = Math.max(abandonedAt ?? 0, Number(change.at));
  }
  const byKey = new Map(signers.map((s) => [s.key_id, s]));
  const valid: SignatureRow[] = [];
  const invalid: { row: SignatureRow; reason: string }[] = [];
  for (const row of rows) {
    const reason =
      rowProblem(row, byKey.get(row.key_id), running) ??
      (abandonedAt !== null && Number(row.recorded_at) <= abandonedAt
        ? `void: signed before the policy moved away from this hash (${new Date(abandonedAt).toISOString()}); sign again`
        : null);
    if (reason === null) valid.push(row);
    else invalid.push({ row, reason });
  }
  return { valid, invalid };
}

function rowProblem(
  row: SignatureRow,
  signer: Signer | undefined,
  running: ReleaseManifest | null,
): string | null {
  if (running === null) return NO_INSTALLATION_REASON;
  const policyHash = running.policyHash;
  if (!signer) return `signed with the key ${row.key_id}, which is not registered`;
  if (signer.revoked_at !== null) return `void: ${revokedReason(signer)}`;
  if (row.role !== signer.role)
    return `the row's role ${row.role} is not the key's registered role ${signer.role}`;
  if (row.name !== signer.name) {
    return `the row's name ${JSON.stringify(row.name)} is not the key's registered name ${JSON.stringify(signer.name)}`;
  }
  if (row.policy_hash !== policyHash) {
    return `void: signed against policy ${row.policy_hash.slice(0, 12)}…, and the policy has changed since (current ${policyHash.slice(0, 12)}…)`;
  }
  let stored: z.infer<typeof unsignedSchema>;
  try {
    const value: unknown = JSON.parse(row.document);
    if (isLegacy(value)) return `void: ${LEGACY_REASON}`;
    const parsed = unsignedSchema.safeParse(value);
    if (!parsed.success) return `the stored document is malformed: ${describeIssues(parsed.error)}`;
    stored = parsed.data;
  } catch (error) {
    return `the stored document is not JSON: ${(error as Error).message}`;
  }
  for (const [column, field] of COLUMN_FIELDS) {
    if (row[column] !== stored[field]) {
      return `the row's ${column} (${JSON.stringify(row[column])}) differs from the stored document's ${field} (${JSON.stringify(stored[field])})`;
    }
  }
  if (documentBytes(stored) !== row.document) return 'the stored document is not in its canonical form';
  if (!verifyBytes(row.document, row.signature, createPublicKey(signer.public_key))) {
    return 'the signature does not verify over the stored document (the document or the signature was altered)';
  }
  const elsewhere = installationProblem(stored.manifest, running);
  if (elsewhere !== null) return `void: ${elsewhere}`;
  // The limits are judged apart (approvedLimits): a lowering needs no signature.
  const differences = manifestDifferences(stored.manifest, running, { limits: false });
  if (differences.length > 0) {
    return `void: signed over another release manifest (${differences.map(describeDifference).join('; ')}); sign again or set the signed values again`;
  }
  // The kind's rules again (a row written around recordSignature must not pass); the date was
  // checked against the day it was recorded.
  return kindRefusal(stored);
}

/**
 * The limits the valid documents approve, and by what. With a CFO amendment: its limits, lowered by
 * any sign-off recorded after it (each signs the limits running when it was made). Without one: the
 * lower of each limit across the latest sign-off of each role. Null when neither exists.
 */
export function approvedLimits(
  valid: readonly SignatureRow[],
): { limits: ManifestLimits; by: string } | null {
  const amendment = valid.filter((r) => r.kind === 'amendment').at(-1);
  const after = amendment ? Number(amendment.id) : 0;
  const latestSignoffs = new Map<string, SignatureRow>();
  for (const row of valid) {
    if (row.kind === 'signoff' && Number(row.id) > after) latestSignoffs.set(row.role, row);
  }
  const signoffs = [...latestSignoffs.values()];
  const lower = (rows: readonly SignatureRow[], from: ManifestLimits | null) =>
    rows
      .map((r) => documentManifest(r).limits)
      .reduce<ManifestLimits | null>((a, b) => (a === null ? b : lowerLimits(a, b)), from);
  if (amendment) {
    const limits = lower(signoffs, documentManifest(amendment).limits)!;
    const by = `the CFO's amendment #${amendment.id} (${amendment.name})`;
    return {
      limits,
      by: signoffs.length === 0 ? by : `${by} and the ${signoffs.length} sign-off(s) after it`,
    };
  }
  if (signoffs.length === 0) return null;
  return {
    limits: lower(signoffs, null)!,
    by: `the sign-offs (${signoffs.length} of ${SIGNOFF_ROLES.length})`,
  };
}
