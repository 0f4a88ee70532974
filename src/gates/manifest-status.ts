/**
 * The release manifest's status: the running manifest against the one signed, its limits against
 * those approved, and its monitoring.
 */
import type { Config } from '../config/index.js';
import { LEGACY_SIGNATURE_FORMAT } from './document.js';
import {
  describeDifference,
  limitsAbove,
  manifestDifferences,
  manifestHash,
  monitoringRefusals,
  type ReleaseManifest,
} from './manifest.js';
import type { Signatures } from './signature-items.js';
import { approvedLimits, documentManifest } from './signatures.js';
import type { ManifestStatus } from './status.js';

/** The manifest's own checks: signed as it runs, limits within approval, monitoring on. */
export function manifestStatus(
  running: ReleaseManifest | null,
  signatures: Signatures,
  sources: Config['sources'],
): ManifestStatus {
  if (running === null) {
    return {
      hash: null,
      document: null,
      approvedLimits: null,
      approvedBy: null,
      problems: ['this store has no installation id (it was never initialised): run `valhalla init`'],
    };
  }
  const problems: string[] = [];
  // The latest sign-off or activation for this installation: what the running one is compared with.
  const signed = [...signatures.valid, ...signatures.invalid.map((i) => i.row)]
    .filter((row) => row.kind === 'signoff' || row.kind === 'activation')
    .sort((a, b) => Number(a.id) - Number(b.id))
    .map((row) => {
      try {
        const doc = JSON.parse(row.document) as { format?: string; manifest?: ReleaseManifest };
        return doc.format === LEGACY_SIGNATURE_FORMAT ? undefined : documentManifest(row);
      } catch {
        return undefined;
      }
    })
    .filter((m): m is ReleaseManifest => m?.installationId === running.installationId)
    .at(-1);
  if (signed) {
    const differences = manifestDifferences(signed, running, { limits: false });
    if (differences.length > 0) {
      problems.push(
        `the running configuration differs from the signed one: ${differences.map(describeDifference).join('; ')}. Fix: set the signed values again, or have the sign-offs, attestations and activation signed again over the running manifest (valhalla gates manifest)`,
      );
    }
  }
  const approved = approvedLimits(signatures.valid);
  if (approved) {
    const above = limitsAbove(running.limits, approved.limits, sources);
    if (above.length > 0) {
      problems.push(
        `limits above those approved by ${approved.by}: ${above.join('; ')}. Fix: lower them, or have the CFO sign an amendment with the new values (valhalla amend)`,
      );
    }
  }
  problems.push(...monitoringRefusals(running));
  return {
    hash: manifestHash(running),
    document: running,
    approvedLimits: approved?.limits ?? null,
    approvedBy: approved?.by ?? null,
    problems,
  };
}
