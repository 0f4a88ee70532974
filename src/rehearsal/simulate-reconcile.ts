// The simulation's Phase 4 summary: the ramp stages, the daily caps, rollbacks and pauses, the
// totals, and the reconciliation of the database against the sandbox partner's own ledger.
import type { App } from '../app/index.js';
import { DUPLICATE_AT_PARTNER, leadKey } from '../engine/index.js';
import type { AuditAction, LeadState } from '../policy/index.js';
import type { SandboxPartner } from '../sandbox/index.js';
import { auditEntriesBetween, dailyUsage, listLeads, utcDay, waitingLeadCount } from '../store/index.js';
import { DAY, HOUR } from './simulate-options.js';
import type { SimulatedCycle, SimulationResult } from './simulate-result.js';

export async function summarise(
  app: App,
  sandbox: SandboxPartner,
  cycles: SimulatedCycle[],
  start: number,
  end: number,
) {
  const { store, config } = app;
  const hourOf = (at: number) => Math.round(((at - start) / HOUR) * 100) / 100;
  const ramp: SimulationResult['ramp'] = [];
  for (const c of cycles) {
    if (c.kind !== 'live' || c.rampStage === null) continue;
    const stage = ramp.find((r) => r.stage === c.rampStage);
    if (stage) stage.maxClaimed = Math.max(stage.maxClaimed, c.claimed);
    else
      ramp.push({
        stage: c.rampStage,
        firstAt: c.at,
        hour: c.hour,
        ceiling: c.ceiling,
        maxClaimed: c.claimed,
      });
  }
  const days: SimulationResult['days'] = [];
  // The partner's own per-lead ledger: the same in either profile (a CRM has no batch keys).
  const ledger = Object.entries(sandbox.leads());
  for (let day = Math.floor(start / DAY) * DAY; day < end; day += DAY) {
    const usage = await dailyUsage(store.db, day);
    const exported = cycles
      .filter((c) => utcDay(Date.parse(c.at)) === utcDay(day))
      .reduce((sum, c) => sum + c.accepted, 0);
    const atPartner = ledger.filter(
      ([, l]) => l.acceptedAt !== null && utcDay(l.acceptedAt) === utcDay(day),
    ).length;
    days.push({
      day: utcDay(day),
      exported,
      atPartner,
      claimed: usage.leads,
      exposure: usage.exposure,
      dailyCapHeld:
        usage.leads <= config.policy.dailyLeads &&
        atPartner <= config.policy.dailyLeads &&
        usage.exposure <= config.policy.budgetExposure,
    });
  }
  const modeChanges = async (action: AuditAction) =>
    (await auditEntriesBetween(store.db, [action], start, end + DAY)).map((e) => ({
      at: new Date(Number(e.at)).toISOString(),
      hour: hourOf(Number(e.at)),
      reason: String((JSON.parse(e.details) as { reason?: unknown }).reason ?? ''),
    }));
  const rollbacks = await modeChanges('mode.rollback');
  const pauses = await modeChanges('mode.pause');
  // The partner's own record against the database: nothing sent twice, nothing it should not have.
  // A replay of a batch key the partner holds is not a second sending (it answers with its first answer).
  // Under the CRM (no batch key), a lead sent again after a lost answer comes back a duplicate: not a
  // second sending when the database recorded it so (exported, "duplicate at partner").
  const leadsIn = (state: LeadState) => listLeads(store.db, { state, limit: 10_000_000 });
  const keysOf = async (state: LeadState) => new Set((await leadsIn(state)).map((l) => leadKey(l)));
  const exportedLeads = await leadsIn('exported');
  const exported = new Set(exportedLeads.map((l) => leadKey(l)));
  const knownDuplicates = new Set(
    exportedLeads
      .filter((l) => l.state_reason?.startsWith(DUPLICATE_AT_PARTNER) === true)
      .map((l) => leadKey(l)),
  );
  const sentTwice =
    sandbox.profile === 'valhalla'
      ? Object.values(sandbox.records().leadBatches).filter((batches) => batches.length > 1).length
      : ledger.filter(([key, l]) => l.duplicates > 0 && !knownDuplicates.has(key)).length;
  const atPartner = new Map(ledger);
  const mayBeAtPartner = new Set([
    ...exported,
    ...(await keysOf('in_flight')),
    ...(await keysOf('quarantined')),
  ]);
  const unexpected = [...atPartner.keys()].filter((key) => !mayBeAtPartner.has(key)).length;
  const exportedNotAtPartner = [...exported].filter(
    (key) => (atPartner.get(key)?.acceptedAt ?? null) === null,
  ).length;
  const stats = sandbox.stats();
  const starts = [...stats.requestStarts].sort((a, b) => a - b);
  const mostRequestsInAnySecond = mostStartsInAnyWindow(starts, config.policy.rateWindowMs);
  // The partner keeps the last 10,000 arrival times: a longer run is checked over those only.
  const rateCheckedRequests = starts.length;
  return {
    cycles,
    ramp,
    days,
    rollbacks,
    pauses,
    reconciliation: {
      sentTwice,
      unexpected,
      exportedNotAtPartner,
      mostRequestsInAnySecond,
      rateCheckedRequests,
      replayMismatches: stats.batches.replayMismatches,
      lost: 0,
      ok:
        sentTwice === 0 &&
        unexpected === 0 &&
        exportedNotAtPartner === 0 &&
        stats.batches.replayMismatches === 0 &&
        mostRequestsInAnySecond <= config.limits.rateLimitPerSecond,
    },
  };
}

export async function totals(app: App, sandbox: SandboxPartner, cycles: SimulatedCycle[], ingested: number) {
  const status = await app.status();
  const stats = sandbox.stats();
  const { total: _total, ...leadsByState } = status.leads;
  // 429 is the partner asking to slow down: not a failure by the policy's error-rate rule.
  const answeredWithError = Object.entries(stats.requests.byStatus)
    .filter(([code]) => Number(code) >= 400 && code !== '429')
    .reduce((sum, [, n]) => sum + n, 0);
  return {
    ingested,
    exported: cycles.reduce((sum, c) => sum + c.accepted, 0),
    quarantined: status.leads.quarantined,
    requests: stats.requests.total,
    failedRequests: answeredWithError + stats.requests.dropped + stats.requests.hung,
    rateLimited: stats.requests.byStatus['429'] ?? 0,
    tokensIssued: stats.tokens.issued,
    leadsByState,
    waitingInBatches: await waitingLeadCount(app.store.db),
  };
}

/** The most request arrivals the partner saw in any window of `windowMs` (its own clock). */
export function mostStartsInAnyWindow(starts: readonly number[], windowMs: number): number {
  let most = 0;
  let first = 0;
  for (let last = 0; last < starts.length; last++) {
    while (starts[last]! - starts[first]! >= windowMs) first++;
    most = Math.max(most, last - first + 1);
  }
  return most;
}
