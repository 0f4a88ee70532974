/**
 * The items that signatures satisfy: a sign-off, an attestation, the CEO's activation (valid only
 * after every sign-off that counts now), each from the signatures valid now.
 */
import type { SignatureRow, SignerRole } from '../store/index.js';
import { type EvidenceCheck, ROLE_TITLES, SIGNOFF_ROLES } from './catalogue.js';
import type { validSignatures } from './signatures.js';
import type { ItemStatus } from './status.js';

export type Signatures = Awaited<ReturnType<typeof validSignatures>>;

/** The CEO's activation, valid only if it came after every one of the five sign-offs that count now. */
export function validActivation(signatures: Signatures): SignatureRow | undefined {
  const signoffs = signatures.valid.filter((r) => r.kind === 'signoff');
  const roles = new Set(signoffs.map((r) => r.role));
  if (SIGNOFF_ROLES.some((role) => !roles.has(role))) return undefined;
  const lastSignoff = Math.max(...signoffs.map((r) => Number(r.id)));
  return signatures.valid.filter((r) => r.kind === 'activation' && Number(r.id) > lastSignoff).at(-1);
}

export function activationInvalid(signatures: Signatures, valid: SignatureRow | undefined) {
  if (valid) return [];
  const superseded = signatures.valid
    .filter((r) => r.kind === 'activation')
    .map((row) => ({
      row,
      reason: 'made before the sign-offs that count now (or some are missing): the CEO must activate again',
    }));
  return [...signatures.invalid.filter((i) => i.row.kind === 'activation'), ...superseded];
}

export function roleOfSignoff(evidence: EvidenceCheck): SignerRole | null {
  return evidence.startsWith('signoff:') ? (evidence.slice('signoff:'.length) as SignerRole) : null;
}

/** A sign-off, attestation or activation item from the signatures valid now. */
export function signatureItem(
  signatures: Signatures,
  kind: 'signoff' | 'attestation' | 'activation',
  role: SignerRole,
  item: string | null,
): Pick<ItemStatus, 'state' | 'detail' | 'date'> & { signer: string | null } {
  const matches = (row: SignatureRow) =>
    row.kind === kind && row.role === role && (item === null || row.item === item);
  const valid = signatures.valid.filter(matches).at(-1);
  const what =
    kind === 'signoff' ? 'sign-off' : kind === 'activation' ? "the CEO's activation" : 'attestation';
  if (valid) {
    const date = (JSON.parse(valid.document) as { date?: string }).date ?? null;
    return {
      state: 'ok',
      detail: `${what} signed by ${valid.name} (${ROLE_TITLES[role]})`,
      date,
      signer: valid.name,
    };
  }
  const invalid = signatures.invalid.filter((i) => matches(i.row)).at(-1);
  if (invalid) {
    return {
      state: 'invalid',
      detail: `${what} by ${invalid.row.name} is not valid: ${invalid.reason}`,
      date: null,
      signer: invalid.row.name,
    };
  }
  return {
    state: 'missing',
    detail: `${what} by the ${ROLE_TITLES[role]} missing`,
    date: null,
    signer: null,
  };
}
