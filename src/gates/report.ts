import type { AuditEntry } from '../audit/index.js';
import { EVIDENCE_ACTIONS, ROLE_TITLES } from './catalogue.js';
import { evaluateGates, type GatesDeps } from './evaluate.js';
import { describeLimits } from './manifest.js';
import { validSignatures } from './signatures.js';
import { listSigners } from './signers.js';
import type { GatesReport } from './status.js';

export interface GatesBundle {
  format: 'valhalla-gates-report/1';
  report: GatesReport;
  /** Every registered signer with its public key: what an auditor checks the signatures with. */
  signers: { role: string; name: string; keyId: string; publicKey: string; revokedAt: string | null }[];
  /** Every signed document recorded, as signed, with its verdict now. */
  signatures: {
    kind: string;
    role: string;
    name: string;
    gate: number | null;
    item: string | null;
    keyId: string;
    document: string;
    signature: string;
    valid: boolean;
    reason: string | null;
  }[];
  /** The latest entry of each kind of evidence, exactly as in the chain (its hash re-computable). */
  evidence: AuditEntry[];
  /** The chain's entry that names the installation (`system.initialized`, or `installation.identified`). */
  installation: AuditEntry | null;
  chain: { entries: number; headHash: string; verified: boolean };
}

/**
 * `valhalla gates report`: the gates' state with everything an auditor needs to check it offline
 * (scripts/verify-gates-report.mjs): the signed documents and the keys to verify them with, and the
 * evidence entries whose hashes the chain vouches for.
 */
export async function buildGatesBundle(deps: GatesDeps): Promise<{ bundle: GatesBundle; markdown: string }> {
  const report = await evaluateGates(deps);
  const [signers, signatures, chain] = await Promise.all([
    listSigners(deps.store.db),
    validSignatures(deps.store.db, report.manifest.document),
    deps.audit.verify(),
  ]);
  // An installation from before installation ids got its id later, in an entry of its own.
  const installation =
    (await deps.audit.latest('installation.identified')) ??
    (await deps.audit.latest('system.initialized')) ??
    null;
  const evidence: AuditEntry[] = [];
  for (const action of Object.values(EVIDENCE_ACTIONS)) {
    const entry = await deps.audit.latest(action);
    if (entry) evidence.push(entry);
  }
  const rows = [
    ...signatures.valid.map((row) => ({ row, reason: null })),
    ...signatures.invalid.map(({ row, reason }) => ({ row, reason })),
  ].sort((a, b) => a.row.id - b.row.id);
  const bundle: GatesBundle = {
    format: 'valhalla-gates-report/1',
    report,
    signers: signers.map((s) => ({
      role: s.role,
      name: s.name,
      keyId: s.key_id,
      publicKey: s.public_key,
      revokedAt: s.revoked_at === null ? null : new Date(s.revoked_at).toISOString(),
    })),
    signatures: rows.map(({ row, reason }) => ({
      kind: row.kind,
      role: row.role,
      name: row.name,
      gate: row.gate,
      item: row.item,
      keyId: row.key_id,
      document: row.document,
      signature: row.signature,
      valid: reason === null,
      reason,
    })),
    evidence,
    installation,
    chain: { entries: chain.entries, headHash: chain.headHash, verified: chain.ok },
  };
  return { bundle, markdown: renderMarkdown(bundle) };
}

function renderMarkdown(bundle: GatesBundle): string {
  const { report } = bundle;
  const cell = (text: string | null) => (text ?? '').replaceAll('|', '\\|').replaceAll('\n', ' ');
  const lines = [
    '# Phase 4 go-live gates: evidence report',
    '',
    `- Generated: ${report.at}`,
    `- Policy hash: \`${report.policyHash}\``,
    report.manifest.document === null
      ? '- Release manifest: none (no installation id)'
      : `- Release manifest: \`${report.manifest.hash}\` (installation \`${report.manifest.document.installationId}\`); limits ${describeLimits(report.manifest.document.limits)}${report.manifest.approvedLimits === null ? '' : `, approved up to ${describeLimits(report.manifest.approvedLimits)} by ${report.manifest.approvedBy}`}`,
    ...report.manifest.problems.map((p) => `- Release manifest refused: ${cell(p)}`),
    `- Verdict: **${report.cleared ? 'CLEARED: every gate green, activated by the CEO' : `NOT CLEARED: ${report.missing.length} item(s) missing`}**`,
    `- Audit chain: ${bundle.chain.entries} entries, head \`${bundle.chain.headHash}\`, ${bundle.chain.verified ? 'verifies' : 'BROKEN'}`,
    '',
    'Verify offline: `node scripts/verify-gates-report.mjs gates-report.json` (Node.js only).',
    '',
  ];
  for (const gate of report.gates) {
    lines.push(`## Gate ${gate.gate}: ${gate.title} (${gate.ok ? 'green' : 'NOT green'})`, '');
    lines.push('| item | state | kind | evidence or signer | date |', '|---|---|---|---|---|');
    for (const item of gate.items) {
      lines.push(
        `| ${cell(item.text)} (\`${item.id}\`) | ${item.state} | ${item.kind}${item.role ? ` (${ROLE_TITLES[item.role]})` : ''} | ${cell(item.detail)} | ${cell(item.date)} |`,
      );
    }
    lines.push('');
  }
  lines.push('## Activation', '', `${report.activation.state}: ${report.activation.detail}`, '');
  if (report.missing.length > 0) {
    lines.push('## Missing', '', ...report.missing.map((m) => `- ${cell(m)}`), '');
  }
  lines.push('## Signers', '', '| role | name | key id | revoked |', '|---|---|---|---|');
  for (const s of bundle.signers) {
    lines.push(
      `| ${ROLE_TITLES[s.role as keyof typeof ROLE_TITLES] ?? s.role} | ${cell(s.name)} | \`${s.keyId}\` | ${s.revokedAt ?? ''} |`,
    );
  }
  lines.push('', '## Signed documents', '', '| kind | role | name | item | valid |', '|---|---|---|---|---|');
  for (const s of bundle.signatures) {
    lines.push(
      `| ${s.kind} | ${s.role} | ${cell(s.name)} | ${s.item ?? ''} | ${s.valid ? 'yes' : `NO: ${cell(s.reason)}`} |`,
    );
  }
  lines.push(
    '',
    '## Evidence (audit chain entries)',
    '',
    '| seq | action | at | hash |',
    '|---|---|---|---|',
  );
  for (const e of bundle.evidence) {
    lines.push(`| ${e.seq} | ${e.action} | ${new Date(e.at).toISOString()} | \`${e.hash}\` |`);
  }
  return `${lines.join('\n')}\n`;
}
