/**
 * The gate clearance the guard and `valhalla run` ask: the gates' evaluation, cached while nothing
 * that changes it has been recorded.
 */
import type { AuditVerification } from '../audit/index.js';
import type { GateClearance } from '../guard/index.js';
import { evaluateGates, GATE_ACTIONS, type GatesDeps } from './evaluate.js';
import type { GatesReport } from './status.js';

/**
 * The gate clearance the guard and `valhalla run` ask: evaluateGates's report, reused for at most
 * `cacheMs` and only while no signature, revocation, policy change or evidence has been recorded
 * since (one indexed query per ask).
 */
export function createGateClearance(
  deps: GatesDeps,
  cacheMs = 30_000,
): GateClearance & { report(): Promise<GatesReport> } {
  let cached: { at: number; version: number; report: GatesReport } | null = null;
  // The whole chain is walked once per process; it is append-only at the database level, and
  // `valhalla gates verify|status|report` walk it every time.
  let chain: AuditVerification | null = null;
  const report = async () => {
    const now = deps.clock.now();
    // A signature, a revocation, a policy change or new evidence makes the cached answer stale at once.
    const version = await deps.audit.latestSeq(GATE_ACTIONS);
    if (cached && cached.version === version && now - cached.at < cacheMs && now >= cached.at) {
      return cached.report;
    }
    chain ??= await deps.audit.verify();
    const fresh = await evaluateGates(deps, { chain });
    cached = { at: now, version, report: fresh };
    return fresh;
  };
  return {
    report,
    async check() {
      const r = await report();
      if (r.cleared)
        return { cleared: true, reason: 'all nine gates verified and signed; activated by the CEO' };
      const shown = r.missing.slice(0, 5).join('; ');
      return {
        cleared: false,
        reason: `the go-live gates are not all green (${r.missing.length} missing): ${shown}${r.missing.length > 5 ? '; …' : ''}`,
      };
    },
  };
}
