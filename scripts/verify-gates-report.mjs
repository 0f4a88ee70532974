#!/usr/bin/env node
// Verifies a `valhalla gates report` bundle (gates-report.json) offline, with nothing but Node.js:
// no Valhalla code, no database.
//   1. Every signed document: its signature verifies (Ed25519) with the public key the bundle lists
//      for its key id; the document's fields match the record (kind, role, name, item); its policy
//      hash is the report's; the key is registered for that role and name.
//   2. Every evidence entry's hash is the SHA-256 of the canonical JSON of its fields (the audit
//      chain's rule, docs/audit.md); compare the hashes with a full `valhalla audit export` checked
//      by verify-audit-export.mjs to tie them to the chain.
//   3. Every attested item and sign-off the report calls green rests on a document that verifies.
// Usage: node verify-gates-report.mjs gates-report.json
// Exit 0 when everything checks out and the report says CLEARED; 1 otherwise (each problem printed).
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';

function canonical(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const keys = Object.keys(value)
    .filter((k) => value[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
}

const [file] = process.argv.slice(2);
if (!file) {
  console.error('usage: node verify-gates-report.mjs gates-report.json');
  process.exit(2);
}
const bundle = JSON.parse(readFileSync(file, 'utf8'));
if (bundle.format !== 'valhalla-gates-report/1') {
  console.error(`not a gates report (format ${bundle.format})`);
  process.exit(2);
}
const problems = [];
const keys = new Map(bundle.signers.map((s) => [s.keyId, s]));
const goodDocuments = [];
for (const s of bundle.signatures) {
  const signer = keys.get(s.keyId);
  const label = `${s.kind} by ${s.name} (${s.role})${s.item ? ` for ${s.item}` : ''}`;
  if (!signer) {
    if (s.valid) problems.push(`${label}: key ${s.keyId} is not in the bundle`);
    continue;
  }
  const raw = createPublicKey(signer.publicKey).export({ format: 'der', type: 'spki' }).subarray(-32);
  const keyId = createHash('sha256').update(raw).digest('hex');
  const ok = verify(
    null,
    Buffer.from(s.document, 'utf8'),
    createPublicKey(signer.publicKey),
    Buffer.from(s.signature, 'base64'),
  );
  let doc = null;
  try {
    doc = JSON.parse(s.document);
  } catch {}
  const fieldsMatch =
    doc !== null &&
    doc.kind === s.kind &&
    doc.role === s.role &&
    doc.name === s.name &&
    (doc.item ?? null) === (s.item ?? null) &&
    doc.keyId === s.keyId &&
    keyId === s.keyId &&
    signer.role === s.role &&
    signer.name === s.name;
  const samePolicy = doc !== null && doc.policyHash === bundle.report.policyHash;
  const verdict = ok && fieldsMatch && samePolicy && signer.revokedAt === null;
  if (verdict !== s.valid) {
    problems.push(
      `${label}: the report says ${s.valid ? 'valid' : 'invalid'}, the check says ${verdict ? 'valid' : `invalid (${!ok ? 'bad signature' : !fieldsMatch ? 'fields or key do not match' : !samePolicy ? 'another policy hash' : 'key revoked'})`}`,
    );
  }
  if (verdict) goodDocuments.push(doc);
}
for (const e of bundle.evidence) {
  const body = {
    seq: e.seq,
    at: e.at,
    actor: e.actor,
    action: e.action,
    subject: e.subject,
    details: e.details,
    prev_hash: e.prev_hash,
  };
  const hash = createHash('sha256').update(canonical(body)).digest('hex');
  if (hash !== e.hash) problems.push(`evidence entry ${e.seq} (${e.action}): contents do not match its hash`);
}
const signed = (kind, role, item) =>
  goodDocuments.some((d) => d.kind === kind && d.role === role && (item === null || d.item === item));
for (const gate of bundle.report.gates) {
  for (const item of gate.items) {
    if (item.state !== 'ok' || item.role === null) continue;
    const kind = item.kind === 'attested' ? 'attestation' : 'signoff';
    if (!signed(kind, item.role, item.kind === 'attested' ? item.id : null)) {
      problems.push(
        `gate ${gate.gate} ${item.id}: reported green, but no verifying ${kind} by the ${item.role} is in the bundle`,
      );
    }
  }
}
if (bundle.report.activation.state === 'ok' && !signed('activation', 'ceo', null)) {
  problems.push('activation: reported, but no verifying activation by the CEO is in the bundle');
}
for (const p of problems) console.log(`PROBLEM: ${p}`);
console.log(
  `${bundle.signatures.length} signed document(s), ${goodDocuments.length} verify; ${bundle.evidence.length} evidence entr${bundle.evidence.length === 1 ? 'y' : 'ies'}; report: ${bundle.report.cleared ? 'CLEARED' : `NOT CLEARED (${bundle.report.missing.length} missing)`}`,
);
process.exit(problems.length === 0 && bundle.report.cleared ? 0 : 1);
