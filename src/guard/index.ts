import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import type { Pseudonymizer } from '../pii/index.js';
import { freshnessCutoff, guardAction, HARD_CAPS } from '../policy/index.js';
import type { StoreTransaction } from '../store/index.js';
import { dailyUsage, type Lead } from '../store/index.js';
import { readMode } from './modes.js';

/** Whether the go-live gates are all verified and signed against the current policy hash. */
export interface GateClearance {
  check(): Promise<{ cleared: boolean; reason: string }>;
}

export type RefusalCode =
  | 'DRY_RUN'
  | 'MODE_NOT_LIVE'
  | 'GATES_NOT_CLEARED'
  | 'PLAIN_HTTP'
  | 'NO_PARTNER'
  | 'ACTIONS_EXHAUSTED'
  | 'NO_HEALTH_CHECK'
  | 'BATCH_TOO_LARGE'
  | 'DAILY_CAP'
  | 'BUDGET_CAP'
  | 'LEAD_INELIGIBLE';

/** A refusal is a value, not an exception (STYLE.md): the caller decides what happens to the batch. */
export type GuardDecision =
  | { allowed: true }
  | { allowed: false; code: RefusalCode; reason: string; ineligibleLeadIds?: number[] };

export interface ActionRequest {
  cycleId: number;
  deliveryId: number | null;
  batchKey: string;
  /** 1 for the first attempt, then 2, 3, … for retries. */
  attempt: number;
  leads: Lead[];
  actionsUsedThisCycle: number;
  actionsPerCycle: number;
  /** The ceiling of the cycle that claimed the batch (checked on the first attempt). */
  ceiling: number;
  /** When the partner's health check last passed for this batch, or null. */
  healthCheckPassedAt: number | null;
}

export interface Guard {
  /**
   * Re-check everything right before a request, inside the caller's transaction: the decision is in
   * the audit chain when that transaction commits, which the caller does before any request.
   */
  authorize(request: ActionRequest, trx: StoreTransaction): Promise<GuardDecision>;
  /**
   * Ask the gates now, outside any transaction (the answer is read from the database, and a query on
   * another connection inside the caller's transaction could wait on it forever). `authorize` uses
   * this answer while it is at most GATES_ANSWER_VALID_MS old, and refuses without one.
   */
  prepare(): Promise<void>;
}

/** How long the gates' answer counts for the guard: the engine asks again before each transaction. */
export const GATES_ANSWER_VALID_MS = 60_000;

/** A health check older than this does not count for the batch about to be sent. */
export const HEALTH_CHECK_VALID_MS = 60_000;

export function createGuard(deps: {
  config: Config;
  audit: AuditLog;
  clock: Clock;
  pseudonymizer: Pseudonymizer;
  gates: GateClearance;
  /** The limits in force now (lowered while the service runs); default the configuration's. */
  limits?: () => Config['limits'];
}): Guard {
  const { config, audit, clock, pseudonymizer, gates } = deps;
  let answer: { cleared: boolean; reason: string; at: number } | null = null;

  async function decide(request: ActionRequest, trx: StoreTransaction): Promise<GuardDecision> {
    if (config.phase !== 4 || config.dryRun || config.outboundDisabled) {
      return {
        allowed: false,
        code: 'DRY_RUN',
        reason: `Phase ${config.phase} is DRY-RUN: recorded, not sent`,
      };
    }
    const mode = await readMode(trx);
    // After a rollback the product is back in DRY-RUN (the dry run continues): recorded, not sent.
    if (mode === 'rolled_back') {
      return { allowed: false, code: 'DRY_RUN', reason: 'mode is rolled_back: DRY-RUN, recorded, not sent' };
    }
    if (mode !== 'live') return { allowed: false, code: 'MODE_NOT_LIVE', reason: `mode is ${mode}` };
    const now = clock.now();
    if (answer === null || now - answer.at > GATES_ANSWER_VALID_MS || now < answer.at) {
      return {
        allowed: false,
        code: 'GATES_NOT_CLEARED',
        reason: `the gates were not checked in the last ${GATES_ANSWER_VALID_MS / 1000} s`,
      };
    }
    if (!answer.cleared) return { allowed: false, code: 'GATES_NOT_CLEARED', reason: answer.reason };
    const url = config.partner.url;
    if (url === null)
      return { allowed: false, code: 'NO_PARTNER', reason: 'VALHALLA_PARTNER_URL is not set' };
    if (new URL(url).protocol !== 'https:') {
      return { allowed: false, code: 'PLAIN_HTTP', reason: 'the partner URL is not https://' };
    }
    const actionsPerCycle = Math.min(request.actionsPerCycle, HARD_CAPS.actionsPerCycle);
    if (request.actionsUsedThisCycle >= actionsPerCycle) {
      return {
        allowed: false,
        code: 'ACTIONS_EXHAUSTED',
        reason: `${actionsPerCycle} actions already used this cycle`,
      };
    }
    if (request.healthCheckPassedAt === null || now - request.healthCheckPassedAt > HEALTH_CHECK_VALID_MS) {
      return { allowed: false, code: 'NO_HEALTH_CHECK', reason: 'no passing health check for this batch' };
    }
    // A first attempt must fit the limits in force now; a retry was within them when it was first
    // sent, and lowering a limit must not strand it half-delivered: it is held to the hard maximum.
    const batchLimit =
      request.attempt === 1
        ? Math.min(HARD_CAPS.leadsPerCycle, (deps.limits?.() ?? config.limits).leadsPerCycle, request.ceiling)
        : HARD_CAPS.leadsPerCycle;
    if (request.leads.length > batchLimit) {
      return {
        allowed: false,
        code: 'BATCH_TOO_LARGE',
        reason: `${request.leads.length} leads exceed the limit ${batchLimit}${request.attempt === 1 ? '' : ' (hard maximum, retry)'}`,
      };
    }
    // The batch's leads were counted when it was claimed: the day's count includes them.
    const today = await dailyUsage(trx, now);
    if (today.leads > config.policy.dailyLeads) {
      return {
        allowed: false,
        code: 'DAILY_CAP',
        reason: `${today.leads} leads today exceed ${config.policy.dailyLeads}`,
      };
    }
    // The budget is counted the same way (Σ score × value of the day's claimed leads).
    if (today.exposure > config.policy.budgetExposure) {
      return {
        allowed: false,
        code: 'BUDGET_CAP',
        reason: `exposure ${today.exposure} today exceeds the budget ${config.policy.budgetExposure}`,
      };
    }
    // A synthetic lead never leaves, whatever selected it (the claim passes them over already).
    const synthetic = request.leads.filter((lead) => lead.synthetic === 1);
    if (synthetic.length > 0) {
      return {
        allowed: false,
        code: 'LEAD_INELIGIBLE',
        reason: `${synthetic.length} synthetic lead(s): a synthetic lead is never sent live`,
        ineligibleLeadIds: synthetic.map((l) => l.id),
      };
    }
    const cutoff = freshnessCutoff(config.policy.maxLeadAgeDays, now);
    const ineligible = request.leads.filter(
      (lead) =>
        lead.state !== 'in_flight' ||
        lead.exported_at !== null ||
        lead.score < config.policy.minLeadScore ||
        lead.source_ts < cutoff,
    );
    if (ineligible.length > 0) {
      return {
        allowed: false,
        code: 'LEAD_INELIGIBLE',
        reason: `${ineligible.length} lead(s) no longer eligible (state, score, age or already exported)`,
        ineligibleLeadIds: ineligible.map((l) => l.id),
      };
    }
    return { allowed: true };
  }

  return {
    async prepare() {
      const checked = await gates.check();
      answer = { ...checked, at: clock.now() };
    },
    async authorize(request, trx) {
      const decision = await decide(request, trx);
      const verdict = decision.allowed ? 'allowed' : decision.code === 'DRY_RUN' ? 'dry_run' : 'refused';
      await audit.append(trx, {
        actor: 'guard',
        action: guardAction(verdict),
        subject: `batch:${request.batchKey}`,
        details: {
          cycle: request.cycleId,
          delivery: request.deliveryId,
          attempt: request.attempt,
          leads: request.leads.map((l) => ({ lead: l.id, pseudonym: pseudonymizer.pseudonym(l.dedup_key) })),
          ...(decision.allowed ? {} : { code: decision.code, reason: decision.reason }),
        },
      });
      return decision;
    },
  };
}

export {
  changeMode,
  ERROR_WINDOW_SINCE_KEY,
  type Mode,
  type ModeChangeRequest,
  readGoLiveAt,
  readMode,
  readModeChange,
  readModeChangedAt,
  writeGoLiveAt,
  writeMode,
} from './modes.js';
