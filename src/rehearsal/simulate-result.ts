// What a simulation reports: each simulated cycle, the ramp, the days, the totals and the
// reconciliation against the sandbox partner's own ledger.
import type { CycleReport } from '../engine/index.js';
import type { StabilityResult } from '../gates/index.js';
import type { LeadState } from '../policy/index.js';
import type { FaultProfile } from './simulate-options.js';

export interface SimulatedCycle {
  at: string;
  hour: number;
  kind: CycleReport['kind'];
  mode: string;
  rampStage: number | null;
  ceiling: number;
  limitedBy: string;
  claimed: number;
  /** Partner requests carrying batches (retries included): the policy's actions. */
  actions: number;
  accepted: number;
  retrying: number;
  quarantined: number;
  refused: number;
  dryRun: number;
  healthFailed: boolean;
}

export interface SimulationResult {
  options: { hours: number; leadsPerHour: number; faults: FaultProfile; seed: number; start: string };
  faultsDescribed: string;
  /** The partner profile the sandbox played and the simulated installation spoke: the configured one. */
  profile: { name: string; sha256: string };
  /** The limits the simulated Phase 4 ran with. */
  limits: {
    leadsPerCycle: number;
    actionsPerCycle: number;
    rateLimitPerSecond: number;
    dailyLeads: number;
    budget: number;
    cycleIntervalSeconds: number;
  };
  cycles: SimulatedCycle[];
  /** The first cycle of each ramp stage and the most leads any cycle of it claimed. */
  ramp: { stage: number; firstAt: string; hour: number; ceiling: number; maxClaimed: number }[];
  /**
   * Per UTC day: leads exported (the engine's outcomes), leads the partner itself accepted that day
   * (its own record), leads claimed and exposure (the daily caps' counters).
   */
  days: {
    day: string;
    exported: number;
    atPartner: number;
    claimed: number;
    exposure: number;
    dailyCapHeld: boolean;
  }[];
  rollbacks: { at: string; hour: number; reason: string }[];
  /** Outbound paused by the product itself (a 429 storm, a partner without TLS 1.2); nobody resumes in a simulation. */
  pauses: { at: string; hour: number; reason: string }[];
  totals: {
    ingested: number;
    exported: number;
    quarantined: number;
    /** Failed partner requests (errors, dropped, hung); 429s are counted apart. */
    failedRequests: number;
    rateLimited: number;
    tokensIssued: number;
    requests: number;
    leadsByState: Partial<Record<LeadState, number>>;
    /** Leads in batches waiting to be sent again (queued or backing off): kept, not mid-request. */
    waitingInBatches: number;
  };
  /** Checked against the sandbox partner's own per-lead ledger (`sandbox.leads()`), in either profile. */
  reconciliation: {
    /**
     * Leads the partner received again after it held them: under another batch key (the product's
     * contract), or as a conflict on the lead key or e-mail (a CRM, which has no batch key).
     */
    sentTwice: number;
    /** Lead keys the partner received that the database has neither exported, in flight nor quarantined. */
    unexpected: number;
    exportedNotAtPartner: number;
    /** The most requests that reached the partner in any 1 s (its own record; the policy: 5). */
    mostRequestsInAnySecond: number;
    /** How many of the partner's requests the rate check saw (it keeps the last 10,000). */
    rateCheckedRequests: number;
    /** Resends under a batch key that carried other leads than the first time (a client bug). */
    replayMismatches: number;
    /** Leads accepted by ingest that are in no state (lost): must be 0. */
    lost: number;
    ok: boolean;
  };
  /** What `stability verify` would say of a Phase 3 run of the same length and lead flow. */
  stability: StabilityResult;
  runMs: number;
}
