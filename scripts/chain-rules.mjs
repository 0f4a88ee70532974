// The audit chain's rules (src/audit/chain.ts, docs/audit.md), for the offline verifiers: nothing
// but Node.js.
import { createHash } from 'node:crypto';

/** Canonical JSON as the product hashes and signs it: keys sorted, undefined dropped, no white space. */
export function canonical(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const keys = Object.keys(value)
    .filter((k) => value[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
}

/** An entry's hash: SHA-256 (hex) of the canonical JSON of every field but `hash` itself. */
export function entryHash(e) {
  const body = {
    seq: e.seq,
    at: e.at,
    actor: e.actor,
    action: e.action,
    subject: e.subject,
    details: e.details,
    prev_hash: e.prev_hash,
  };
  return createHash('sha256').update(canonical(body)).digest('hex');
}
