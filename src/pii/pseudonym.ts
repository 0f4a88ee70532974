import { createHmac, createSecretKey } from 'node:crypto';

/** Keyed hashing of lead identities: stable for dedup, meaningless without the secret. */
export interface Pseudonymizer {
  /**
   * The key of an identity, e.g. `('email', 'jane@example.com')`: the first 16 bytes (32 hex digits) of
   * its keyed hash. A lead's dedup key is the key of the identity the rule names.
   */
  dedupKey(kind: 'email' | 'external_id', normalisedValue: string): string;
  /** The pseudonym the audit chain and the logs use for a lead with this dedup key. */
  pseudonym(dedupKey: string): string;
  /** A fingerprint of the secret, stored to detect that the secret changed under existing data. */
  readonly fingerprint: string;
}

/**
 * Bytes of an identity's keyed hash kept as its key: 128 bits, as many as a lead key (`lk_` and 32 hex
 * digits) always carried. Two different people's keys meet with odds of about n²/2¹²⁹ for n leads.
 */
export const IDENTITY_KEY_BYTES = 16;

export function createPseudonymizer(secret: string): Pseudonymizer {
  // The key made once: given as text, each HMAC would prepare it again (an ingest makes two a row).
  const key = createSecretKey(Buffer.from(secret, 'utf8'));
  return {
    dedupKey(kind, normalisedValue) {
      return createHmac('sha256', key)
        .update(`${kind}:${normalisedValue}`)
        .digest()
        .toString('hex', 0, IDENTITY_KEY_BYTES);
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
