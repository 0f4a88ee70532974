// `valhalla simulate`: a Phase 3 run then Phase 4 from go-live, each from private databases in a
// temporary folder (simulate-phase3.ts, simulate-phase4.ts), put together into one result.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sandboxProfileFor } from './private-install.js';
import {
  FAULT_PROFILES,
  faultsRefusedFor,
  HOUR,
  SIMULATE_INSTEAD,
  type SimulationOptions,
  SimulationRefused,
} from './simulate-options.js';
import { simulatePhase3 } from './simulate-phase3.js';
import { simulatePhase4 } from './simulate-phase4.js';
import type { SimulationResult } from './simulate-result.js';

export {
  FAULT_PROFILE_NAMES,
  FAULT_PROFILES,
  type FaultProfile,
  isSimulationRefused,
  type SimulationOptions,
  SimulationRefused,
} from './simulate-options.js';

import { profileIdentity } from '../config/index.js';

export { SIMULATED_STABILITY_CHECKS } from './simulate-phase3.js';
export { mostStartsInAnyWindow } from './simulate-reconcile.js';
export type { SimulatedCycle, SimulationResult } from './simulate-result.js';

/**
 * `valhalla simulate`: the real engine (guard, outbox, partner client, error-rate monitor) under a
 * virtual clock, sending to an in-process sandbox partner over real HTTPS, from private databases in
 * a temporary folder: a Phase 3 run (for the stability verdict), then Phase 4 from go-live. The
 * sandbox plays the installation's configured partner profile (refused, `SimulationRefused`, when it
 * cannot, or when the fault profile means nothing under it). Days of
 * policy time take seconds. The operator is simulated only where the policy needs one: each cycle of
 * ramp stage 1 is confirmed; a rollback is never re-armed.
 */
export async function simulate(options: SimulationOptions): Promise<SimulationResult> {
  const refused = faultsRefusedFor(options.config, options.faults);
  if (refused !== null) throw new SimulationRefused(refused);
  const played = sandboxProfileFor(options.config, SIMULATE_INSTEAD);
  if (!played.ok) throw new SimulationRefused(played.message);
  const { profile } = options.config.partner;
  const began = performance.now();
  const start = options.start ?? Date.now();
  const end = start + options.hours * HOUR;
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-simulate-'));
  try {
    const stability = await simulatePhase3(options, dir, start, end);
    const live = await simulatePhase4(options, played.profile, dir, start, end);
    const { limits: used, ...phase4 } = live;
    return {
      options: {
        hours: options.hours,
        leadsPerHour: options.leadsPerHour,
        faults: options.faults,
        seed: options.seed,
        start: new Date(start).toISOString(),
      },
      faultsDescribed: FAULT_PROFILES[options.faults].describe,
      profile: profileIdentity(profile),
      limits: used,
      ...phase4,
      stability,
      runMs: Math.round(performance.now() - began),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
