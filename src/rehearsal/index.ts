// Rehearsals: runs against private installations and sandbox partners whose results are gate
// evidence. Each records its own evidence in the installation's audit chain; the CLI only prints.
import type { App } from '../app/index.js';
import { EVIDENCE_ACTIONS, recordStability, type StabilityResult, verifyStability } from '../gates/index.js';
import { type ConformanceResult, recordConformance, runConformance } from './conformance.js';
import { type DrillResult, runRollbackDrill } from './drill.js';
import {
  type PartnerConformanceResult,
  recordPartnerConformance,
  runPartnerConformance,
} from './partner-conformance.js';

export {
  CONFORMANCE_SCENARIOS,
  type ConformanceCheck,
  type ConformanceResult,
  runConformance,
} from './conformance.js';
export {
  checkDashboard,
  DASHBOARD_PROBE_ACTION,
  type DashboardCheck,
  type DashboardCheckResult,
} from './dashboard-check.js';
export { type DrillCheck, type DrillResult, runRollbackDrill } from './drill.js';
export {
  PARTNER_CONFORMANCE_KEY_PREFIX,
  type PartnerConformanceResult,
  runPartnerConformance,
} from './partner-conformance.js';
export {
  FAULT_PROFILE_NAMES,
  type FaultProfile,
  isSimulationRefused,
  type SimulationResult,
  simulate,
} from './simulate.js';
export { formatSimulation, simulationHtml } from './simulate-report.js';

/** The partner conformance suite against the in-process sandbox, recorded as gate 2 and 3 evidence. */
export async function rehearseConformance(app: App): Promise<ConformanceResult> {
  const result = await runConformance({ config: app.config });
  await recordConformance(app.audit, result, app.config.operator);
  return result;
}

/** The safe scenarios against the configured partner, recorded (Phase 4 needs a passing run). */
export async function rehearsePartnerConformance(app: App): Promise<PartnerConformanceResult> {
  const result = await runPartnerConformance({ config: app.config, clock: app.clock });
  await recordPartnerConformance(app.audit, result, app.config.operator);
  return result;
}

/** A timed rollback drill from a private database, recorded as gate 7 evidence (`drill.rollback`). */
export async function rehearseRollbackDrill(app: App): Promise<DrillResult> {
  const result = await runRollbackDrill({ config: app.config });
  await app.audit.record({
    actor: app.config.operator,
    action: EVIDENCE_ACTIONS.drill,
    details: { ...result },
  });
  return result;
}

/**
 * Gate 9: the last `hours` of Phase 3 checked; with `record`, the result is written to the audit
 * chain as gate 9 evidence (`stability.verified`). Trying it records nothing.
 */
export async function checkStability(
  app: App,
  options: { hours: number; record: boolean },
): Promise<StabilityResult> {
  const result = await verifyStability(
    { store: app.store, clock: app.clock, config: app.config },
    { hours: options.hours },
  );
  if (options.record) await recordStability(app.audit, result, app.config.operator);
  return result;
}
