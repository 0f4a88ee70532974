import { createHmac } from 'node:crypto';

/** Keyed hashing of lead identities: stable for dedup, meaningless without the secret. */
export interface Pseudonymizer {
  /** The database dedup key for an identity, e.g. `('email', 'jane@example.com')`: 64 hex characters. */
  dedupKey(kind: 'email' | 'external_id', normalisedValue: string): string;
  /** The pseudonym the audit chain and the logs use for a lead with this dedup key. */
  pseudonym(dedupKey: string): string;
  /** A fingerprint of the secret, stored to detect that the secret changed under existing data. */
  readonly fingerprint: string;
}

export function createPseudonymizer(secret: string): Pseudonymizer {
  return {
    dedupKey(kind, normalisedValue) {
      return createHmac('sha256', secret).update(`${kind}:${normalisedValue}`).digest('hex');
    },
    pseudonym(dedupKey) {
      return `L-${dedupKey.slice(0, 20)}`;
    },
    fingerprint: createHmac('sha256', secret)
      .update('valhalla:secret-fingerprint')
      .digest('hex')
      .slice(0, 32),
  };
}
