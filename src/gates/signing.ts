import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { z } from 'zod';
import type { AuditAction, AuditLog } from '../audit/index.js';
import { refuseContactData } from '../pii/index.js';
import { canonicalJson } from '../policy/index.js';
import type { StoreDb, StoreTransaction } from '../store/index.js';
import {
  allSignatures,
  allSigners,
  auditDetailsOf,
  countSignaturesByKey,
  type Dialect,
  findSigner,
  insertSignature,
  insertSigner,
  lockSigning,
  markSignerRevoked,
  type SignatureKind,
  type SignatureRow,
  type Signer,
  type SignerRole,
} from '../store/index.js';
import { findItem, SIGNOFF_ROLES } from './catalogue.js';
import {
  describeDifference,
  lowerLimits,
  type ManifestLimits,
  manifestDifferences,
  manifestHash,
  manifestSchema,
  type ReleaseManifest,
} from './manifest.js';

/**
 * Ed25519 signatures over the go-live documents: sign-offs (policy §6), attestations of gate items,
 * the CEO's activation and the CFO's amendments. A document is signed over the canonical JSON of its
 * fields, so it can travel as pretty-printed JSON from a stakeholder's machine and still verify; the
 * database keeps the exact bytes signed, and every read re-verifies them (DESIGN.md §3, invariant 1).
 *
 * Each document carries the release manifest it approves (manifest.ts): the installation, the
 * policy, the partner, the limits, the dedup rule and the monitoring. A document signed for another
 * installation, or over a manifest that differs from the running one in anything but the limits, is
 * refused or void; the limits are judged apart (approvedLimits): lower is always allowed, higher
 * needs a CFO amendment.
 */

export const SIGNATURE_FORMAT = 'valhalla-signature/2';
/** The format before release manifests: such a document names no installation and no manifest. */
export const LEGACY_SIGNATURE_FORMAT = 'valhalla-signature/1';

export type SigningErrorCode = 'INVALID_KEY' | 'KEY_MISMATCH' | 'INVALID_DOCUMENT';

/** A key or a document that cannot be used at all (as opposed to a refusal, which is a value). */
export class SigningError extends Error {
  override readonly name = 'SigningError';
  constructor(
    readonly code: SigningErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isSigningError(error: unknown): error is SigningError {
  return error instanceof SigningError;
}

/** What a signer signs (with `format`, which pins the meaning of the fields). */
export interface SignedFields {
  kind: SignatureKind;
  role: SignerRole;
  name: string;
  /** YYYY-MM-DD, UTC. */
  date: string;
  comments: string;
  /** The gate and item an attestation is about; null for the other kinds. */
  gate: number | null;
  item: string | null;
  /** The policy file's hash (also in the manifest; the two must agree). */
  policyHash: string;
  /** The release manifest approved: for an amendment, with the new limits. */
  manifest: ReleaseManifest;
  keyId: string;
}

export interface SignedDocument extends SignedFields {
  format: typeof SIGNATURE_FORMAT;
  /** Base64 of the 64-byte Ed25519 signature over `documentBytes(doc)`. */
  signature: string;
}

// ---------------------------------------------------------------------------------------------
// Keys

/** A fresh Ed25519 key pair, as PEM (PKCS#8 private, SPKI public), with its key id. */
export function createKeyPair(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem,
    keyId: keyIdOfKey(publicKey),
  };
}

/** SHA-256 (hex) of the raw 32-byte Ed25519 public key: how documents and the signers table name a key. */
export function keyIdOf(publicKeyPem: string): string {
  return keyIdOfKey(loadPublicKey(publicKeyPem));
}

/** The public key as SPKI PEM, normalised (what the signers table stores). */
export function normalizePublicKey(publicKeyPem: string): string {
  return loadPublicKey(publicKeyPem).export({ type: 'spki', format: 'pem' }).toString();
}

/** The public half of an Ed25519 private key, as SPKI PEM (to name the key that signs). */
export function publicKeyOf(privateKeyPem: string): string {
  return createPublicKey(loadPrivateKey(privateKeyPem)).export({ type: 'spki', format: 'pem' }).toString();
}

function keyIdOfKey(publicKey: KeyObject): string {
  const { x } = publicKey.export({ format: 'jwk' });
  const raw = Buffer.from(x ?? '', 'base64url');
  if (raw.length !== 32)
    throw new SigningError('INVALID_KEY', 'not an Ed25519 public key (raw key is not 32 bytes)');
  return createHash('sha256').update(raw).digest('hex');
}

function loadPublicKey(pem: string): KeyObject {
  // createPublicKey would quietly derive the public half of a private key: refuse instead, so a
  // private key is never registered (and stored) by mistake.
  if (/PRIVATE KEY/.test(pem)) {
    throw new SigningError('INVALID_KEY', 'this is a private key: give the public key (the .pub file)');
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (cause) {
    throw new SigningError('INVALID_KEY', `not a readable public key PEM: ${(cause as Error).message}`, {
      cause,
    });
  }
  return requireEd25519(key, 'public');
}

function loadPrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (cause) {
    throw new SigningError('INVALID_KEY', `not a readable private key PEM: ${(cause as Error).message}`, {
      cause,
    });
  }
  return requireEd25519(key, 'private');
}

function requireEd25519(key: KeyObject, which: 'public' | 'private'): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new SigningError(
      'INVALID_KEY',
      `the ${which} key is ${key.asymmetricKeyType ?? 'of an unknown type'}, not Ed25519`,
    );
  }
  return key;
}

// ---------------------------------------------------------------------------------------------
// Documents

const HEX64 = /^[0-9a-f]{64}$/;
const ROLES = ['ceo', 'cfo', 'general_counsel', 'risk_officer', 'head_of_operations'] as const;
const KINDS = ['signoff', 'attestation', 'activation', 'amendment'] as const;

/** A real calendar day written YYYY-MM-DD (2026-02-30 is not one). */
function isCalendarDay(date: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return false;
  const at = Date.parse(`${date}T00:00:00Z`);
  return Number.isFinite(at) && new Date(at).toISOString().slice(0, 10) === date;
}

const fieldsShape = {
  format: z.literal(SIGNATURE_FORMAT),
  kind: z.enum(KINDS),
  role: z.enum(ROLES),
  name: z
    .string()
    .min(1, 'must not be empty')
    .max(200)
    .refine((s) => s.trim() === s, 'must not start or end with spaces'),
  date: z.string().refine(isCalendarDay, 'must be a calendar day written YYYY-MM-DD'),
  comments: z.string().max(4000),
  gate: z.number().int().min(1).max(9).nullable(),
  item: z.string().min(1).max(100).nullable(),
  policyHash: z.string().regex(HEX64, 'must be 64 lowercase hex digits (SHA-256)'),
  manifest: manifestSchema,
  keyId: z.string().regex(HEX64, 'must be 64 lowercase hex digits (SHA-256 of the public key)'),
};

const samePolicy = (doc: { policyHash: string; manifest: { policyHash: string } }) =>
  doc.policyHash === doc.manifest.policyHash;
const samePolicyIssue = { message: "must be the manifest's policy hash", path: ['policyHash'] };

const unsignedSchema = z.strictObject(fieldsShape).refine(samePolicy, samePolicyIssue);
const signedSchema = z
  .strictObject({
    ...fieldsShape,
    signature: z
      .string()
      .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64')
      .refine((s) => Buffer.from(s, 'base64').length === 64, 'must be a 64-byte Ed25519 signature'),
  })
  .refine(samePolicy, samePolicyIssue);

/** A document (or a stored one) in the format before release manifests. */
function isLegacy(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { format?: unknown }).format === LEGACY_SIGNATURE_FORMAT
  );
}
const LEGACY_REASON =
  'a document of the format before release manifests (valhalla-signature/1) names no installation and no manifest: sign again with this release';

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const field = issue.path.length > 0 ? issue.path.join('.') : '(document)';
      return `${field}: ${issue.message}`;
    })
    .join('; ');
}

function parseJsonObject(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new SigningError('INVALID_DOCUMENT', `${what} is not JSON: ${(cause as Error).message}`, { cause });
  }
}

/** The exact text signed: canonical JSON of the fields and `format`, without the signature. */
export function documentBytes(doc: SignedFields | SignedDocument): string {
  const { signature: _signature, ...fields } = doc as SignedDocument;
  return canonicalJson({ ...fields, format: SIGNATURE_FORMAT });
}

/** Sign `fields` with this Ed25519 private key; the key must be the one `fields.keyId` names. */
export function signDocument(fields: SignedFields, privateKeyPem: string): SignedDocument {
  const parsed = unsignedSchema.safeParse({ ...fields, format: SIGNATURE_FORMAT });
  if (!parsed.success) {
    throw new SigningError('INVALID_DOCUMENT', `cannot sign: ${describeIssues(parsed.error)}`);
  }
  const privateKey = loadPrivateKey(privateKeyPem);
  const keyId = keyIdOfKey(createPublicKey(privateKey));
  if (keyId !== fields.keyId) {
    throw new SigningError('KEY_MISMATCH', `the private key is ${keyId}, the document names ${fields.keyId}`);
  }
  const unsigned = { ...parsed.data, format: SIGNATURE_FORMAT } as const;
  const signature = sign(null, Buffer.from(documentBytes(unsigned), 'utf8'), privateKey).toString('base64');
  return { ...unsigned, signature };
}

/** Whether `doc` is signed by this public key, over exactly these fields. Never throws. */
export function verifyDocument(doc: SignedDocument, publicKeyPem: string): boolean {
  try {
    if (doc.format !== SIGNATURE_FORMAT) return false;
    const publicKey = loadPublicKey(publicKeyPem);
    if (keyIdOfKey(publicKey) !== doc.keyId) return false;
    return verifyBytes(documentBytes(doc), doc.signature, publicKey);
  } catch {
    return false;
  }
}

function verifyBytes(text: string, signatureBase64: string, publicKey: KeyObject): boolean {
  try {
    const signature = Buffer.from(signatureBase64, 'base64');
    if (signature.length !== 64) return false;
    return verify(null, Buffer.from(text, 'utf8'), publicKey, signature);
  } catch {
    return false;
  }
}

/** Parse a signed document (a file written by `valhalla signoff --out`); errors name the field. */
export function parseSignedDocument(text: string): SignedDocument {
  const value = parseJsonObject(text, 'the signed document');
  if (isLegacy(value)) throw new SigningError('INVALID_DOCUMENT', LEGACY_REASON);
  const parsed = signedSchema.safeParse(value);
  if (!parsed.success) {
    throw new SigningError('INVALID_DOCUMENT', `invalid signed document: ${describeIssues(parsed.error)}`);
  }
  return parsed.data;
}

/** How old a document's signed date may be when it is submitted. */
export const MAX_DOCUMENT_AGE_DAYS = 30;

/**
 * Why these fields cannot be a valid document whatever the database holds, or null: the date (a
 * calendar day, UTC, not after today and at most MAX_DOCUMENT_AGE_DAYS before it), and the kind's
 * rules (an attestation names an existing attested item of the signer's role and its gate; an
 * activation is the CEO's; an amendment the CFO's; only attestations name a gate or an item).
 */
export function fieldsRefusal(fields: SignedFields, now: number): string | null {
  const contactData = refuseContactData(fields.comments, 'the comments');
  if (contactData !== null) return contactData;
  if (!isCalendarDay(fields.date)) return `the date ${JSON.stringify(fields.date)} is not YYYY-MM-DD`;
  const today = new Date(now).toISOString().slice(0, 10);
  if (fields.date > today) return `the date ${fields.date} is in the future (today is ${today}, UTC)`;
  // A document signed long ago and held back is refused: what it approves may no longer be the case.
  const earliest = new Date(now - MAX_DOCUMENT_AGE_DAYS * 86_400_000).toISOString().slice(0, 10);
  if (fields.date < earliest) {
    return `the date ${fields.date} is more than ${MAX_DOCUMENT_AGE_DAYS} days ago (earliest ${earliest}): sign again`;
  }
  return kindRefusal(fields);
}

function kindRefusal(fields: SignedFields): string | null {
  switch (fields.kind) {
    case 'attestation': {
      if (fields.item === null) return 'an attestation must name an item';
      const item = findItem(fields.item);
      if (!item) return `no gate item ${fields.item}`;
      if (item.check.kind !== 'attested') {
        return `item ${item.id} is verified by the system from evidence, not attested`;
      }
      if (item.check.role !== fields.role) {
        return `item ${item.id} is attested by the ${item.check.role}, not the ${fields.role}`;
      }
      if (fields.gate !== item.gate)
        return `item ${item.id} belongs to gate ${item.gate}, not ${fields.gate}`;
      return null;
    }
    case 'signoff':
    case 'activation':
    case 'amendment': {
      if (fields.gate !== null || fields.item !== null) return `a ${fields.kind} names no gate or item`;
      if (fields.kind === 'activation' && fields.role !== 'ceo') {
        return `the activation is the CEO's, not the ${fields.role}'s`;
      }
      if (fields.kind === 'amendment' && fields.role !== 'cfo') {
        return `an amendment is the CFO's, not the ${fields.role}'s`;
      }
      return null;
    }
    default: {
      const never: never = fields.kind;
      return `unknown kind ${String(never)}`;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Store

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
async function locked<T>(deps: SigningDeps, work: (trx: StoreTransaction) => Promise<T>): Promise<T> {
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
