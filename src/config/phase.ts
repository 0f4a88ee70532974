/**
 * The phase (3: DRY-RUN, 4: LIVE) and the rule that its three switches (real data ingest, DRY-RUN,
 * outbound disabled) agree with it.
 */
import type { ConfigIssue } from './errors.js';
import type { VariableName } from './variables.js';

export type Phase = 3 | 4;

/** The policy's §2 and §5: the phase and its three switches must agree. */
export function checkPhaseCombination(
  phase: Phase,
  flags: { realDataIngest: boolean; dryRun: boolean; outboundDisabled: boolean },
  raw: Partial<Record<VariableName, string>>,
  issues: ConfigIssue[],
): void {
  const shown = (name: VariableName, value: boolean) => raw[name] ?? `${value ? 1 : 0} (default)`;
  if (phase === 3) {
    if (!flags.dryRun) {
      issues.push({
        setting: 'VALHALLA_DRY_RUN',
        value: shown('VALHALLA_DRY_RUN', flags.dryRun),
        problem: 'Phase 3 requires VALHALLA_DRY_RUN=1 (DRY-RUN is disabled in Phase 4 only)',
      });
    }
    if (!flags.outboundDisabled) {
      issues.push({
        setting: 'VALHALLA_DISABLE_OUTBOUND',
        value: shown('VALHALLA_DISABLE_OUTBOUND', flags.outboundDisabled),
        problem: 'Phase 3 requires VALHALLA_DISABLE_OUTBOUND=1 (outbound is enabled in Phase 4 only)',
      });
    }
    return;
  }
  if (flags.dryRun) {
    issues.push({
      setting: 'VALHALLA_DRY_RUN',
      value: shown('VALHALLA_DRY_RUN', flags.dryRun),
      problem: 'Phase 4 requires VALHALLA_DRY_RUN=0',
    });
  }
  if (flags.outboundDisabled) {
    issues.push({
      setting: 'VALHALLA_DISABLE_OUTBOUND',
      value: shown('VALHALLA_DISABLE_OUTBOUND', flags.outboundDisabled),
      problem: 'Phase 4 requires VALHALLA_DISABLE_OUTBOUND=0',
    });
  }
  if (!flags.realDataIngest) {
    issues.push({
      setting: 'VALHALLA_REAL_DATA_INGEST',
      value: shown('VALHALLA_REAL_DATA_INGEST', flags.realDataIngest),
      problem: 'Phase 4 requires VALHALLA_REAL_DATA_INGEST=1 (real data must be enabled)',
    });
  }
}
