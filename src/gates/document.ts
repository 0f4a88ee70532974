import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { z } from 'zod';
import { refuseContactData } from '../pii/index.js';
import { canonicalJson } from '../policy/index.js';
import type { SignatureKind, SignerRole } from '../store/index.js';
import { findItem } from './catalogue.js';
import { keyIdOfKey, loadPrivateKey, loadPublicKey, SigningError } from './keys.js';
import { manifestSchema, type ReleaseManifest } from './manifest.js';

/**
 * The signed document: its fields, its format, the exact bytes signed, signing and verifying one,
 * parsing one from a file, and the rules its fields must follow whatever the database holds.
 *
 * Ed25519 signatures over the go-live documents: sign-offs (policy §6), attestations of gate items,
 * the CEO's activation and the CFO's amendments. A document is signed over the canonical JSON of its
 * fields, so it can travel as pretty-printed JSON from a stakeholder's machine and still verify; the
 * database keeps the exact bytes signed, and every read re-verifies them.
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

const HEX64 = /^[0-9a-f]{64}$/;
export const ROLES = ['ceo', 'cfo', 'general_counsel', 'risk_officer', 'head_of_operations'] as const;
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

export const unsignedSchema = z.strictObject(fieldsShape).refine(samePolicy, samePolicyIssue);
export const signedSchema = z
  .strictObject({
    ...fieldsShape,
    signature: z
      .string()
      .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64')
      .refine((s) => Buffer.from(s, 'base64').length === 64, 'must be a 64-byte Ed25519 signature'),
  })
  .refine(samePolicy, samePolicyIssue);

/** A document (or a stored one) in the format before release manifests. */
export function isLegacy(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { format?: unknown }).format === LEGACY_SIGNATURE_FORMAT
  );
}
export const LEGACY_REASON =
  'a document of the format before release manifests (valhalla-signature/1) names no installation and no manifest: sign again with this release';

export function describeIssues(error: z.ZodError): string {
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

export function verifyBytes(text: string, signatureBase64: string, publicKey: KeyObject): boolean {
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

export function kindRefusal(fields: SignedFields): string | null {
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
