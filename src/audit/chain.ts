import { createHash } from 'node:crypto';
import { canonicalJson } from '../policy/index.js';

/** The hash before the first entry. */
export const GENESIS_HASH = '0'.repeat(64);

/** An entry as stored and exported: `details` is canonical JSON text, hashed as that text. */
export interface AuditEntry {
  seq: number;
  at: number;
  actor: string;
  action: string;
  subject: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

/**
 * The entry's hash: SHA-256 (hex) of the canonical JSON of every field but `hash` itself.
 * docs/audit.md states this rule for verifiers written without this code.
 */
export function entryHash(entry: Omit<AuditEntry, 'hash'>): string {
  const { seq, at, actor, action, subject, details, prev_hash } = entry;
  return createHash('sha256')
    .update(canonicalJson({ seq, at, actor, action, subject, details, prev_hash }))
    .digest('hex');
}

export type ChainBreak =
  | { seq: number; problem: 'sequence_gap'; expected: number }
  | { seq: number; problem: 'broken_link'; expectedPrevHash: string }
  | { seq: number; problem: 'hash_mismatch'; expectedHash: string };

/** Walks a chain entry by entry; the first break found is kept and reported. */
export class ChainVerifier {
  #expectedSeq = 1;
  #prevHash = GENESIS_HASH;
  #count = 0;
  #break: ChainBreak | null = null;

  /** Feed the next entry in sequence order; returns false once the chain is broken. */
  push(entry: AuditEntry): boolean {
    if (this.#break) return false;
    if (entry.seq !== this.#expectedSeq) {
      this.#break = { seq: entry.seq, problem: 'sequence_gap', expected: this.#expectedSeq };
    } else if (entry.prev_hash !== this.#prevHash) {
      this.#break = { seq: entry.seq, problem: 'broken_link', expectedPrevHash: this.#prevHash };
    } else {
      const recomputed = entryHash(entry);
      if (recomputed !== entry.hash)
        this.#break = { seq: entry.seq, problem: 'hash_mismatch', expectedHash: recomputed };
    }
    if (this.#break) return false;
    this.#count++;
    this.#expectedSeq++;
    this.#prevHash = entry.hash;
    return true;
  }

  result(): { ok: boolean; entries: number; headHash: string; firstBreak: ChainBreak | null } {
    return {
      ok: this.#break === null,
      entries: this.#count,
      headHash: this.#prevHash,
      firstBreak: this.#break,
    };
  }
}

export function describeBreak(chainBreak: ChainBreak): string {
  switch (chainBreak.problem) {
    case 'sequence_gap':
      return `entry ${chainBreak.seq}: sequence gap (expected entry ${chainBreak.expected}; entries were removed or inserted)`;
    case 'broken_link':
      return `entry ${chainBreak.seq}: its previous-hash does not match entry ${chainBreak.seq - 1} (the chain was cut or reordered)`;
    case 'hash_mismatch':
      return `entry ${chainBreak.seq}: its contents do not match its hash (the entry was edited)`;
    default: {
      const never: never = chainBreak;
      return String(never);
    }
  }
}
