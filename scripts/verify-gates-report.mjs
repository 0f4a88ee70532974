#!/usr/bin/env node
// Verifies a `valhalla gates report` bundle (gates-report.json) offline, with nothing but Node.js:
// no Valhalla code, no database.
//   1. Every signed document: its signature verifies (Ed25519) with the public key the bundle lists
//      for its key id; the document's fields match the record (kind, role, name, item); its policy
//      hash is the report's; the key is registered for that role and name.
//   2. Every evidence entry's hash is the SHA-256 of the canonical JSON of its fields (the audit
//      chain's rule, docs/audit.md); compare the hashes with a full `valhalla audit export` checked
//      by verify-audit-export.mjs to tie them to the chain.
//   3. Every attested item and sign-off the report calls green rests on a document that verifies,
//      and every verified item on an evidence entry in the bundle that says so.
//   4. The verdict is recomputed, not read: every item of the nine gates (the list below, the
//      policy's §1) must be present and green, and the CEO's activation recorded after the sign-offs.
//   5. With the policy file as the second argument: the report's policy hash is that file's
//      (SHA-256 of its canonical JSON without the three limits the manifest carries itself:
//      leadsPerCycle, actionsPerCycle, rateLimitPerSecond), so the signatures are over the policy
//      the auditor holds.
//   6. The release manifest: its hash is the SHA-256 of its canonical JSON; its installation id is
//      the one the chain's `system.initialized` (or `installation.identified`) entry in the bundle
//      names, and that entry's hash is its contents'; every valid document names that installation
//      and approves the same manifest in everything but the limits; every amendment is the CFO's;
//      the approved limits are recomputed (the latest amendment newer than the sign-offs, else the
//      sign-offs' lower value of each) and the running limits are within them; monitoring is on;
//      the latest conformance run against a configured partner passed, against the manifest's
//      partner (URL, token URL and CA fingerprints).
// Usage: node verify-gates-report.mjs gates-report.json [policy.json]
// Exit 0 when everything checks out and every gate is green; 1 otherwise (each problem printed).
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { canonical, entryHash } from './chain-rules.mjs';

/** Every item of the nine gates (src/gates/catalogue.ts), kept here so the bundle cannot drop one. */
const ITEMS = [
  '1.legal_signoff',
  '1.audit_trail',
  '1.rollback_procedure',
  '2.endpoint',
  '2.token_refresh',
  '2.failure_handling',
  '2.retries',
  '2.total_failure',
  '3.pii_masking_reviewed',
  '3.gdpr_checklist',
  '3.dedup_tested',
  '3.retention_policy',
  '4.leads_per_cycle',
  '4.actions_per_cycle',
  '4.rate_limit',
  '4.memory_limit',
  '5.slack',
  '5.email',
  '5.dashboard',
  '5.rollback_trigger',
  '6.daily_leads',
  '6.budget',
  '6.cost_per_lead',
  '6.roi',
  '7.procedure',
  '7.time',
  '7.clean',
  '7.tested',
  '8.ceo',
  '8.cfo',
  '8.general_counsel',
  '8.risk_officer',
  '8.head_of_operations',
  '9.stability',
];

/** The policy's limits that the release manifest carries itself (left out of the policy hash). */
const MANIFEST_LIMITS = ['leadsPerCycle', 'actionsPerCycle', 'rateLimitPerSecond'];
const LIMITS_BY_SETTING = {
  leadsPerCycle: 'VALHALLA_MAX_LEADS_PER_CYCLE',
  actionsPerCycle: 'VALHALLA_MAX_ACTIONS_PER_CYCLE',
  rateLimitPerSecond: 'VALHALLA_RATE_LIMIT',
};
const WARNING_LEVELS = ['trace', 'debug', 'info', 'warn'];

/** Two manifests that agree in everything but the limits (the installation included). */
function sameExceptLimits(a, b) {
  if (!a || !b) return false;
  const { limits: _a, ...restA } = a;
  const { limits: _b, ...restB } = b;
  return canonical(restA) === canonical(restB);
}

/** The manifest's own checks (item 6 above); uses the documents that verified. */
function checkManifest() {
  const status = bundle.report.manifest;
  const manifest = status?.document;
  if (!manifest) {
    problems.push('the report holds no release manifest');
    return;
  }
  const hash = createHash('sha256').update(canonical(manifest)).digest('hex');
  if (hash !== status.hash)
    problems.push(`the release manifest's contents do not match its hash ${status.hash}`);
  if (manifest.policyHash !== bundle.report.policyHash)
    problems.push(
      `the release manifest names policy ${manifest.policyHash}, the report ${bundle.report.policyHash}`,
    );
  const installation = bundle.installation;
  if (!installation) {
    problems.push('the bundle holds no entry of the installation (system.initialized)');
  } else {
    if (entryHash(installation) !== installation.hash)
      problems.push(`the installation entry ${installation.seq}: contents do not match its hash`);
    const id = JSON.parse(installation.details).installationId;
    if (id !== manifest.installationId)
      problems.push(
        `the release manifest is for installation ${manifest.installationId}, the chain's is ${id}`,
      );
  }
  for (const doc of goodDocuments) {
    if (doc.kind === 'amendment' && doc.role !== 'cfo')
      problems.push(`an amendment by the ${doc.role}, not the CFO`);
  }
  // The approved limits, recomputed from the documents that verify (in the order recorded): the
  // latest CFO amendment lowered by the sign-offs after it; without one, the latest sign-off of each
  // role, the lower of each limit.
  let lastAmendment = -1;
  goodDocuments.forEach((doc, index) => {
    if (doc.kind === 'amendment' && doc.role === 'cfo') lastAmendment = index;
  });
  const latestSignoffs = new Map();
  goodDocuments.forEach((doc, index) => {
    if (doc.kind === 'signoff' && index > lastAmendment) latestSignoffs.set(doc.role, doc);
  });
  const limitSets = [...latestSignoffs.values()].map((d) => d.manifest.limits);
  if (lastAmendment >= 0) limitSets.unshift(goodDocuments[lastAmendment].manifest.limits);
  let approved = null;
  if (limitSets.length > 0) {
    approved = {};
    for (const limit of MANIFEST_LIMITS) approved[limit] = Math.min(...limitSets.map((l) => l[limit]));
  }
  if (canonical(approved) !== canonical(status.approvedLimits ?? null))
    problems.push(
      `the report says the approved limits are ${canonical(status.approvedLimits)}, the documents ${canonical(approved)}`,
    );
  if (approved) {
    for (const limit of MANIFEST_LIMITS) {
      if (manifest.limits[limit] > approved[limit])
        problems.push(
          `${LIMITS_BY_SETTING[limit]} ${manifest.limits[limit]} is above the approved ${approved[limit]}`,
        );
    }
  }
  const m = manifest.monitoring;
  if (!m.dashboard || !m.metrics || !m.slack || !m.email || !WARNING_LEVELS.includes(m.logLevel))
    problems.push(`monitoring is not fully on in the release manifest: ${canonical(m)}`);
  // Phase 4 needs a passing conformance run against the manifest's own partner (URL, token URL, CA).
  const partnerRun = evidenceOf('gates.partner_conformance');
  const manifestPartner = {
    url: manifest.partner.url,
    tokenUrl: manifest.partner.tokenUrl,
    caFingerprints: manifest.partner.caFingerprints,
  };
  if (partnerRun === undefined) {
    problems.push('no conformance run against the configured partner is in the bundle');
  } else {
    const ran = partnerRun.partner ?? {};
    const ranAgainst = {
      url: ran.url ?? null,
      tokenUrl: ran.tokenUrl ?? null,
      caFingerprints: ran.caFingerprints ?? null,
    };
    if (canonical(ranAgainst) !== canonical(manifestPartner))
      problems.push(
        `the conformance run against a configured partner ran against ${canonical(ranAgainst)}, not the manifest's partner ${canonical(manifestPartner)}`,
      );
    else if (partnerRun.passed !== true)
      problems.push("the conformance run against the manifest's partner did not pass");
  }
}

const [file, policyFile] = process.argv.slice(2);
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
  const samePolicy =
    doc !== null &&
    doc.policyHash === bundle.report.policyHash &&
    doc.manifest?.policyHash === doc.policyHash;
  const sameRelease = doc !== null && sameExceptLimits(doc.manifest, bundle.report.manifest?.document);
  const verdict = ok && fieldsMatch && samePolicy && sameRelease && signer.revokedAt === null;
  if (verdict !== s.valid) {
    problems.push(
      `${label}: the report says ${s.valid ? 'valid' : 'invalid'}, the check says ${verdict ? 'valid' : `invalid (${!ok ? 'bad signature' : !fieldsMatch ? 'fields or key do not match' : !samePolicy ? 'another policy hash' : !sameRelease ? 'another installation or release manifest' : 'key revoked'})`}`,
    );
  }
  if (verdict) goodDocuments.push(doc);
}
for (const e of bundle.evidence) {
  const hash = entryHash(e);
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
// The verdict, recomputed.
const reported = new Map(bundle.report.gates.flatMap((g) => g.items.map((i) => [i.id, i])));
for (const id of ITEMS) {
  const item = reported.get(id);
  if (!item) problems.push(`item ${id} is missing from the report`);
  else if (item.state !== 'ok') problems.push(`item ${id} is not green: ${item.detail}`);
}
// Verified items rest on evidence in the bundle.
const evidenceOf = (action) =>
  bundle.evidence
    .filter((e) => e.action === action)
    .map((e) => JSON.parse(e.details))
    .at(-1);
const needs = {
  '7.time': () => evidenceOf('drill.rollback')?.passed === true,
  '7.clean': () => evidenceOf('drill.rollback')?.passed === true,
  '7.tested': () => evidenceOf('drill.rollback') !== undefined,
  '9.stability': () => evidenceOf('stability.verified')?.passed === true,
  '5.slack': () => evidenceOf('alerts.test')?.results?.some((r) => r.channel === 'slack' && r.ok) === true,
  '5.email': () => evidenceOf('alerts.test')?.results?.some((r) => r.channel === 'email' && r.ok) === true,
  '5.dashboard': () => {
    const check = evidenceOf('dashboard.checked');
    return check?.passed === true && typeof check.latencyMs === 'number' && check.latencyMs <= 1000;
  },
  '3.dedup_tested': () =>
    evidenceOf('gates.conformance')?.scenarios?.some((s) => s.name === 'dedup' && s.passed) === true,
};
for (const scenario of ['endpoint', 'token_refresh', 'failure_handling', 'retries', 'total_failure']) {
  needs[`2.${scenario}`] = () =>
    evidenceOf('gates.conformance')?.scenarios?.some((s) => s.name === scenario && s.passed) === true;
}
for (const [id, supported] of Object.entries(needs)) {
  if (reported.get(id)?.state === 'ok' && !supported())
    problems.push(`item ${id}: reported green, but the bundle's evidence does not show it`);
}
if (bundle.report.activation.state !== 'ok')
  problems.push(`no activation: ${bundle.report.activation.detail}`);
if (!bundle.chain.verified) problems.push('the audit chain did not verify when the report was made');
if (policyFile) {
  const numbers = JSON.parse(readFileSync(policyFile, 'utf8'));
  for (const limit of MANIFEST_LIMITS) delete numbers[limit];
  const hash = createHash('sha256').update(canonical(numbers)).digest('hex');
  if (hash !== bundle.report.policyHash)
    problems.push(`the report is for policy ${bundle.report.policyHash}, not ${policyFile} (${hash})`);
}
checkManifest();
const cleared = problems.length === 0;
if (bundle.report.cleared !== cleared)
  problems.push(
    `the report says ${bundle.report.cleared ? 'CLEARED' : 'NOT CLEARED'}; the check says ${cleared ? 'cleared' : 'not cleared'}`,
  );
for (const p of problems) console.log(`PROBLEM: ${p}`);
console.log(
  `${bundle.signatures.length} signed document(s), ${goodDocuments.length} verify; ${bundle.evidence.length} evidence entr${bundle.evidence.length === 1 ? 'y' : 'ies'}; report: ${bundle.report.cleared ? 'CLEARED' : `NOT CLEARED (${bundle.report.missing.length} missing)`}`,
);
process.exit(problems.length === 0 ? 0 : 1);
