// The conformance scenarios: each checks one part of the partner contract (gate 2) or the dedup self-test (gate 3).
import { ManualClock } from '../clock/index.js';
import { leadKey } from '../engine/index.js';
import { readMode } from '../guard/index.js';
import { liveDeliveryAttempts, recordedRequests } from '../store/index.js';
import {
  type ConformanceCheck,
  type ConformanceScenario,
  type ConformanceScenarioName,
  check,
  describeSends,
  leadRow,
  sameSet,
  short,
  withRig,
} from './conformance-rig.js';

// ---------------------------------------------------------------------------------------------
// The scenarios.

/** 2.endpoint: the health check, one batch POST /api/leads accepted, the partner holding exactly it. */
const endpoint: ConformanceScenario = (setup) =>
  withRig(setup, {}, async (rig) => {
    const rows = ['e1', 'e2', 'e3'].map((id) => leadRow(rig.clock, id));
    await rig.ingest(rows);
    const report = await rig.cycle();
    const records = rig.sandbox.records();
    const exportedKeys = (await rig.leads()).filter((l) => l.state === 'exported').map((l) => leadKey(l));
    const sentKeys = rig.sent.filter((s) => s.outcome === 'accepted').flatMap((s) => s.leadKeys);
    const partnerKeys = Object.keys(records.leadBatches);
    const batchesAsSent = records.batches.every((b) =>
      rig.sent.some(
        (s) =>
          s.batchKey === b.batchKey &&
          s.leadKeys.length === b.leads.length &&
          s.leadKeys.every((k, i) => k === b.leads[i]),
      ),
    );
    const healthOk = rig.health.length > 0 && rig.health.every((h) => h.ok);
    return [
      check(
        'health check passes',
        healthOk,
        rig.health.length === 0
          ? 'no health check was made'
          : rig.health.map((h) => (h.ok ? `HTTP ${h.status}` : `failed: ${h.error ?? h.status}`)).join(', '),
      ),
      check(
        'a batch POST /api/leads is accepted',
        rig.sent.length === 1 && rig.sent[0]?.outcome === 'accepted' && report.accepted === rows.length,
        `${rig.sent.length} request(s): ${describeSends(rig.sent)}; ${report.accepted} of ${rows.length} lead(s) exported`,
      ),
      check(
        'the partner holds exactly the leads sent, with their idempotency keys',
        records.batches.length === 1 &&
          batchesAsSent &&
          sameSet(partnerKeys, sentKeys) &&
          sameSet(sentKeys, exportedKeys),
        `the partner holds ${partnerKeys.length} lead key(s) in ${records.batches.length} batch(es)` +
          `${batchesAsSent ? ' under the batch key sent' : ', not as sent (batch key or lead keys differ)'}; ` +
          `${sentKeys.length} sent, ${exportedKeys.length} exported in the database`,
      ),
    ];
  });

/**
 * Longer than one cycle needs (the engine asks for 2 × 30 s + 10 s, the client adds a 10 s margin), so
 * a token serves more than one cycle; shorter than the run, so it expires during it.
 */
const TOKEN_TTL_SECONDS = 150;
const TOKEN_CYCLES = 4;
const TOKEN_CYCLE_INTERVAL_MS = 60_000;

/** 2.token_refresh: a short-lived token is refreshed ahead of its expiry, never after a 401. */
const tokenRefresh: ConformanceScenario = (setup) =>
  withRig(setup, { faults: { tokenTtlSeconds: TOKEN_TTL_SECONDS }, leadsPerCycle: 1 }, async (rig) => {
    const startedAt = rig.clock.now();
    await rig.ingest(Array.from({ length: TOKEN_CYCLES }, (_, i) => leadRow(rig.clock, `t${i}`)));
    let exported = 0;
    for (let i = 0; i < TOKEN_CYCLES; i++) {
      if (i > 0) rig.clock.advance(TOKEN_CYCLE_INTERVAL_MS);
      exported += (await rig.cycle()).accepted;
    }
    const spanS = (rig.clock.now() - startedAt) / 1000;
    const stats = rig.sandbox.stats();
    const refused401 = stats.requests.byStatus['401'] ?? 0;
    const authOutcomes = rig.sent.filter((s) => s.outcome === 'auth').length;
    const issued = stats.tokens.issued;
    return [
      check(
        'every cycle exports its batch',
        exported === TOKEN_CYCLES &&
          rig.sent.length === TOKEN_CYCLES &&
          rig.sent.every((s) => s.outcome === 'accepted'),
        `${TOKEN_CYCLES} cycles over ${spanS} s: ${exported} lead(s) exported; requests: ${describeSends(rig.sent)}`,
      ),
      check(
        'no 401 reaches a batch',
        refused401 === 0 && authOutcomes === 0,
        `${refused401} answer(s) HTTP 401 from the partner, ${authOutcomes} batch(es) refused for the token`,
      ),
      check(
        'the token is refreshed before it expires',
        // Ahead of its expiry, not after a refusal: the run outlives the first token and no 401 was met.
        issued > 1 && refused401 === 0 && spanS > TOKEN_TTL_SECONDS,
        `${issued} token(s) issued, each valid ${TOKEN_TTL_SECONDS} s, over ${spanS} s of cycles` +
          `${refused401 > 0 ? `, after ${refused401} refusal(s)` : ''}`,
      ),
      check(
        'a valid token is reused, not fetched for every request',
        issued < rig.sent.length,
        `${issued} token(s) for ${rig.sent.length} batch request(s)`,
      ),
    ];
  });

/** 2.failure_handling: a 401 gets a fresh token and a resend; a permanent refusal quarantines, unretried. */
const failureHandling: ConformanceScenario = (setup) => {
  // The partner's own clock: moved ahead, it holds the client's token expired (or revoked) while the
  // client still thinks it valid, so the next batch meets a 401, as with a real partner.
  const partnerClock = new ManualClock(Date.now());
  const ttlS = 600;
  return withRig(setup, { partnerClock, faults: { tokenTtlSeconds: ttlS } }, async (rig) => {
    const checks: ConformanceCheck[] = [];

    await rig.ingest([leadRow(rig.clock, 'f1')]);
    await rig.cycle();
    const tokensBefore = rig.sandbox.stats().tokens.issued;
    const sentBefore = rig.sent.length;
    partnerClock.advance((ttlS + 1) * 1000);
    await rig.ingest([leadRow(rig.clock, 'f2')]);
    await rig.cycle();
    const resend = rig.sent.slice(sentBefore);
    const tokensAfter = rig.sandbox.stats().tokens.issued;
    const f2 = (await rig.leads()).find((l) => l.external_id === 'conf-f2');
    checks.push(
      check(
        'a 401 on a batch gets a fresh token and a resend',
        resend.length === 2 &&
          resend[0]?.outcome === 'auth' &&
          resend[1]?.outcome === 'accepted' &&
          resend[0].batchKey === resend[1].batchKey &&
          tokensAfter === tokensBefore + 1 &&
          f2?.state === 'exported',
        `with the token expired at the partner: ${describeSends(resend)}` +
          `${resend.length === 2 && resend[0]?.batchKey === resend[1]?.batchKey ? ' under the same batch key' : ''}; ` +
          `tokens issued ${tokensBefore} → ${tokensAfter}; the lead is ${f2?.state ?? 'missing'}`,
      ),
    );

    rig.sandbox.setFaults({ permanentStatus: 422 });
    const refusedFrom = rig.sent.length;
    const receivedBefore = rig.sandbox.stats().batches.received;
    await rig.ingest([leadRow(rig.clock, 'f3'), leadRow(rig.clock, 'f4')]);
    await rig.cycle();
    // A later cycle must not try the refused batch again.
    rig.clock.advance(60_000);
    await rig.cycle();
    const refusedSends = rig.sent.slice(refusedFrom);
    const refusedLeads = (await rig.leads()).filter((l) =>
      ['conf-f3', 'conf-f4'].includes(l.external_id ?? ''),
    );
    const quarantined = refusedLeads.filter(
      (l) => l.state === 'quarantined' && /HTTP 422/.test(l.state_reason ?? ''),
    );
    const reason = refusedLeads[0]?.state_reason ?? null;
    checks.push(
      check(
        "a permanent refusal quarantines the batch's leads with the reason",
        refusedLeads.length === 2 && quarantined.length === 2,
        `partner answered ${describeSends(refusedSends.slice(0, 1))}: ${quarantined.length} of ${refusedLeads.length} lead(s) quarantined` +
          `${reason === null ? '' : ` (reason: ${reason})`}`,
      ),
    );
    const received = rig.sandbox.stats().batches.received - receivedBefore;
    checks.push(
      check(
        'nothing is retried after a permanent refusal',
        refusedSends.length === 1 && received === 1,
        `${refusedSends.length} request(s) for the refused batch over 2 cycles; the partner received ${received}`,
      ),
    );
    return checks;
  });
};

/** 2.retries: two transient failures, retried after 1 s and 2 s under the same key, then accepted once. */
const retries: ConformanceScenario = (setup) =>
  withRig(setup, { faults: { failNext: 2 } }, async (rig) => {
    await rig.ingest([leadRow(rig.clock, 'r1'), leadRow(rig.clock, 'r2')]);
    await rig.cycle();
    const expectedWaits = rig.app.config.policy.backoffSeconds.slice(0, 2).map((s) => s * 1000);
    const waits = rig.sent.slice(1).map((s, i) => s.at - (rig.sent[i]?.at ?? s.at));
    const keys = new Set(rig.sent.map((s) => s.batchKey));
    const [key] = keys;
    const stats = rig.sandbox.stats();
    const records = rig.sandbox.records();
    const leads = await rig.leads();
    const deliveries = await liveDeliveryAttempts(rig.app.store.db);
    const quarantined = leads.filter((l) => l.state === 'quarantined').length;
    return [
      check(
        `the batch is retried after ${expectedWaits.map((w) => `${w / 1000} s`).join(' and ')}`,
        rig.sent.length === 3 &&
          waits.length === expectedWaits.length &&
          waits.every((w, i) => w === expectedWaits[i]) &&
          rig.sent[2]?.outcome === 'accepted',
        `${rig.sent.length} attempt(s): ${describeSends(rig.sent)}; waits ${waits.map((w) => `${w} ms`).join(', ') || 'none'}`,
      ),
      check(
        'every attempt carries the same idempotency key',
        rig.sent.length > 1 && keys.size === 1 && deliveries.length === 1 && deliveries[0]?.batch_key === key,
        `${keys.size} batch key(s) over ${rig.sent.length} attempt(s); ${deliveries.length} batch(es) queued` +
          `${deliveries[0] ? `, ${deliveries[0].attempts} attempt(s) recorded` : ''}`,
      ),
      check(
        'accepted, and the partner counts one batch',
        stats.batches.accepted === 1 &&
          records.batches.length === 1 &&
          records.batches[0]?.batchKey === key &&
          stats.leads.accepted === 2 &&
          stats.leads.duplicates === 0,
        `partner: ${stats.batches.received} request(s) received, ${stats.batches.accepted} batch(es) accepted` +
          `${key ? ` (${short(key)})` : ''}, ${stats.leads.accepted} lead(s), ${stats.leads.duplicates} duplicate(s)`,
      ),
      check(
        'nothing quarantined',
        quarantined === 0 && leads.every((l) => l.state === 'exported'),
        `${leads.filter((l) => l.state === 'exported').length} exported, ${quarantined} quarantined`,
      ),
    ];
  });

/** Cycles given to a dead partner before the rollback must have happened (it should at the 3rd request). */
const TOTAL_FAILURE_MAX_CYCLES = 5;
const CYCLES_AFTER_ROLLBACK = 2;

/** 2.total_failure: the partner is down: nothing sent, rolled back within 3 requests, nothing lost, silence after. */
const totalFailure: ConformanceScenario = (setup) =>
  withRig(setup, { faults: { down: true } }, async (rig) => {
    const rows = ['d1', 'd2', 'd3'].map((id) => leadRow(rig.clock, id));
    await rig.ingest(rows);
    let cyclesRun = 0;
    let rolledBack = false;
    let requestsAtRollback = 0;
    while (!rolledBack && cyclesRun < TOTAL_FAILURE_MAX_CYCLES) {
      await rig.cycle();
      cyclesRun++;
      rig.clock.advance(60_000);
      rolledBack = (await readMode(rig.app.store.db)) === 'rolled_back';
    }
    const recorded = await recordedRequests(rig.app.store.db);
    if (rolledBack) requestsAtRollback = rig.sandbox.stats().requests.total;
    const rollbackEntry = await rig.app.audit.latest('mode.rollback');
    const rollbackReason = rollbackEntry
      ? String((JSON.parse(rollbackEntry.details) as { reason?: unknown }).reason ?? '')
      : '';
    for (let i = 0; i < CYCLES_AFTER_ROLLBACK; i++) {
      await rig.cycle();
      rig.clock.advance(60_000);
    }
    const stats = rig.sandbox.stats();
    const leads = await rig.leads();
    const waiting = leads.filter((l) => l.state === 'pending' || l.state === 'in_flight').length;
    const otherStates = [...new Set(leads.map((l) => l.state))].filter(
      (s) => s !== 'pending' && s !== 'in_flight',
    );
    const failed = recorded.filter((r) => r.class === 'failure').length;
    return [
      check(
        'no batch is sent',
        rig.sent.length === 0 && stats.batches.received === 0,
        `${rig.sent.length} batch request(s) made, ${stats.batches.received} received by the partner`,
      ),
      check(
        'rolled back within 3 failed requests',
        rolledBack && recorded.length <= 3 && failed === recorded.length,
        rolledBack
          ? `rolled back after ${failed} failed request(s) (${recorded.map((r) => r.endpoint).join(', ')}): ${rollbackReason}`
          : `still ${await readMode(rig.app.store.db)} after ${cyclesRun} cycles and ${failed} failed request(s)`,
      ),
      check(
        'nothing lost: every lead still pending or queued',
        leads.length === rows.length && waiting === rows.length,
        `${rows.length} ingested: ${leads.length} stored, ${waiting} pending or queued` +
          `${otherStates.length > 0 ? `; others ${otherStates.join(', ')}` : ''}`,
      ),
      check(
        'no request after the rollback',
        rolledBack && stats.requests.total === requestsAtRollback,
        rolledBack
          ? `${stats.requests.total - requestsAtRollback} partner request(s) over ${CYCLES_AFTER_ROLLBACK} cycles after it`
          : 'never rolled back',
      ),
    ];
  });

/**
 * 3.dedup_tested: the same person from a second source (another external id, the e-mail typed with
 * other case and spaces) after the first was exported: stored once, never sent again, and the partner
 * never sees a lead key in two batches.
 */
const dedup: ConformanceScenario = (setup) =>
  withRig(setup, {}, async (rig) => {
    const first = [
      leadRow(rig.clock, 'p1', { external_id: 'crm-1001', email: 'Ada.Lovelace@Conformance.invalid' }),
      leadRow(rig.clock, 'q1'),
      leadRow(rig.clock, 'r1'),
    ];
    const second = [
      leadRow(rig.clock, 'p2', { external_id: 'web-2001', email: '  ADA.LOVELACE@conformance.INVALID ' }),
      leadRow(rig.clock, 's1'),
    ];
    const people = new Set([...first, ...second].map((r) => r.email.trim().toLowerCase()));

    await rig.ingest(first);
    await rig.cycle();
    const sentFirst = rig.sent.length;
    const exportedFirst = new Set(rig.sent.filter((s) => s.outcome === 'accepted').flatMap((s) => s.people));
    const secondSummary = await rig.ingest(second);
    rig.clock.advance(60_000);
    await rig.cycle();
    rig.clock.advance(60_000);
    await rig.cycle();

    const leads = await rig.leads();
    const later = rig.sent.slice(sentFirst);
    const sentAgain = new Set(later.flatMap((s) => s.people).filter((p) => exportedFirst.has(p))).size;
    const records = rig.sandbox.records();
    const stats = rig.sandbox.stats();
    const keysInTwo = Object.values(records.leadBatches).filter((batches) => batches.length > 1).length;
    return [
      check(
        'the same person ingested twice is stored once',
        leads.length === people.size && secondSummary.duplicate === 1,
        `${people.size} people in ${first.length + second.length} rows over 2 files: ${leads.length} stored; ` +
          `the second file's ${secondSummary.duplicate} duplicate(s) counted (dedup key: ${rig.app.config.dedupKey})`,
      ),
      check(
        'a lead already exported is not sent again by later cycles',
        exportedFirst.size === first.length && sentAgain === 0,
        `${exportedFirst.size} exported in the first cycle; ${sentAgain} of them sent again in ${later.length} later batch request(s)`,
      ),
      check(
        'the partner never saw a lead key in two batches',
        keysInTwo === 0 && stats.leads.duplicates === 0 && records.batches.length > 0,
        `${Object.keys(records.leadBatches).length} lead key(s) in ${records.batches.length} batch(es): ` +
          `${keysInTwo} in more than one, ${stats.leads.duplicates} duplicate(s) reported by the partner`,
      ),
    ];
  });

/** Each scenario on its own: `runConformance` runs them all; tests run one against a broken setup. */
export const conformanceScenarios: Readonly<Record<ConformanceScenarioName, ConformanceScenario>> = {
  endpoint,
  token_refresh: tokenRefresh,
  failure_handling: failureHandling,
  retries,
  total_failure: totalFailure,
  dedup,
};
