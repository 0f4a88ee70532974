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
  type Rig,
  sameSet,
  short,
  withRig,
} from './conformance-rig.js';

// ---------------------------------------------------------------------------------------------
// The scenarios.

/** 2.endpoint: the health check, one batch to the profile's leads endpoint accepted, the partner holding exactly it. */
const endpoint: ConformanceScenario = (setup) =>
  withRig(setup, {}, async (rig) => {
    const rows = ['e1', 'e2', 'e3'].map((id) => leadRow(rig.clock, id));
    await rig.ingest(rows);
    const report = await rig.cycle();
    const records = rig.sandbox.records();
    const exportedKeys = (await rig.leads()).filter((l) => l.state === 'exported').map((l) => leadKey(l));
    const sentKeys = rig.sent.filter((s) => s.outcome === 'accepted').flatMap((s) => s.leadKeys);
    const held = partnerHolds(rig);
    const healthOk = rig.health.length > 0 && rig.health.every((h) => h.ok);
    const checks = [
      check(
        'health check passes',
        healthOk,
        rig.health.length === 0
          ? 'no health check was made'
          : rig.health.map((h) => (h.ok ? `HTTP ${h.status}` : `failed: ${h.error ?? h.status}`)).join(', '),
      ),
      check(
        `a batch POST ${rig.leadsPath} is accepted`,
        rig.sent.length === 1 && rig.sent[0]?.outcome === 'accepted' && report.accepted === rows.length,
        `${rig.sent.length} request(s): ${describeSends(rig.sent)}; ${report.accepted} of ${rows.length} lead(s) exported`,
      ),
    ];
    if (rig.profile === 'valhalla') {
      const partnerKeys = Object.keys(records.leadBatches);
      const batchesAsSent = records.batches.every((b) =>
        rig.sent.some(
          (s) =>
            s.batchKey === b.batchKey &&
            s.leadKeys.length === b.leads.length &&
            s.leadKeys.every((k, i) => k === b.leads[i]),
        ),
      );
      checks.push(
        check(
          'the partner holds exactly the leads sent, with their idempotency keys',
          records.batches.length === 1 &&
            batchesAsSent &&
            sameSet(partnerKeys, sentKeys) &&
            sameSet(sentKeys, exportedKeys) &&
            sameSet(held.accepted, sentKeys),
          `the partner holds ${partnerKeys.length} lead key(s) in ${records.batches.length} batch(es)` +
            `${batchesAsSent ? ' under the batch key sent' : ', not as sent (batch key or lead keys differ)'}; ` +
            `${sentKeys.length} sent, ${exportedKeys.length} exported in the database`,
        ),
      );
    } else {
      // The CRM has no batch key: each record stands alone, tied to its lead by the lead key it carries.
      checks.push(
        check(
          'the partner holds exactly the leads sent, each once under its lead key',
          sameSet(held.accepted, sentKeys) && sameSet(sentKeys, exportedKeys) && held.receivedTwice === 0,
          `the partner created ${held.accepted.length} record(s), ${held.receivedTwice} lead key(s) received more than once; ` +
            `${sentKeys.length} sent, ${exportedKeys.length} exported in the database`,
        ),
      );
    }
    return checks;
  });

/**
 * Longer than one cycle needs (the engine asks for 2 × 30 s + 10 s, the client adds a 10 s margin), so
 * a token serves more than one cycle; shorter than the run, so it expires during it.
 */
const TOKEN_TTL_SECONDS = 150;
const TOKEN_CYCLES = 4;
const TOKEN_CYCLE_INTERVAL_MS = 60_000;

/**
 * 2.token_refresh. OAuth2: a short-lived token is refreshed ahead of its expiry, never after a 401.
 * A static credential (a bearer token, an API key) has no expiry of ours and nothing to refresh: the
 * same cycles prove it is presented on every batch and taken, and that no token endpoint is asked.
 */
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
    const common = [
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
    ];
    const auth = rig.app.config.partner.profile.profile.auth.kind;
    if (auth !== 'oauth2_client_credentials') {
      const presented = stats.tokens.presented;
      const tokenRequests = stats.requests.byPath['/oauth/token'] ?? 0;
      return [
        ...common,
        check(
          'the static credential is presented on every batch and taken',
          presented.valid === rig.sent.length && presented.unknown === 0 && presented.expired === 0,
          `the profile's auth is ${auth}: nothing expires on our side, so there is no refresh to prove; ` +
            `the partner took the credential on ${presented.valid} of ${rig.sent.length} batch request(s) over ${spanS} s`,
        ),
        check(
          'no token endpoint is asked',
          issued === 0 && tokenRequests === 0,
          `${issued} token(s) issued, ${tokenRequests} request(s) to a token endpoint`,
        ),
      ];
    }
    return [
      ...common,
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

/**
 * 2.failure_handling. OAuth2: a 401 gets a fresh token and a resend. A static credential cannot be
 * refreshed: a 401 is resent once with the same credential, is not cured by it, and the batch's leads
 * are quarantined with the reason, both requests counted as failed; the next batch is taken once the
 * partner takes the credential again. In both: a permanent refusal quarantines, unretried.
 */
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
    if (rig.app.config.partner.profile.profile.auth.kind === 'oauth2_client_credentials') {
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
    } else {
      // The partner stops taking the credential (revoked, rotated on its side) for one batch.
      const rateBefore = await rig.app.requestMonitor.current(rig.app.store.db);
      rig.sandbox.setFaults({ reject401: true });
      await rig.ingest([leadRow(rig.clock, 'f2')]);
      await rig.cycle();
      rig.sandbox.setFaults({ reject401: false });
      const refusedSends = rig.sent.slice(sentBefore);
      const rateAfter = await rig.app.requestMonitor.current(rig.app.store.db);
      const f2 = (await rig.leads()).find((l) => l.external_id === 'conf-f2');
      const counted = rateAfter.failures - rateBefore.failures;
      checks.push(
        check(
          'a 401 under a static credential is not cured by a resend: the batch is quarantined with the reason and counted as failed',
          refusedSends.length === 2 &&
            refusedSends.every((r) => r.outcome === 'auth' && r.batchKey === refusedSends[0]?.batchKey) &&
            f2?.state === 'quarantined' &&
            /HTTP 401/.test(f2.state_reason ?? '') &&
            counted === 2 &&
            rig.sandbox.stats().tokens.issued === tokensBefore,
          `with the credential refused by the partner: ${describeSends(refusedSends)}` +
            `${refusedSends.length === 2 && refusedSends[0]?.batchKey === refusedSends[1]?.batchKey ? ' under the same batch key, the same credential' : ''}; ` +
            `the lead is ${f2?.state ?? 'missing'}${f2?.state_reason ? ` (${f2.state_reason})` : ''}; ` +
            `${counted} failed request(s) counted for the error rate; no token endpoint asked`,
        ),
      );
      const nextFrom = rig.sent.length;
      await rig.ingest([leadRow(rig.clock, 'f2b')]);
      rig.clock.advance(60_000);
      await rig.cycle();
      const next = rig.sent.slice(nextFrom);
      checks.push(
        check(
          'the next batch is taken once the partner takes the credential again',
          next.length === 1 && next[0]?.outcome === 'accepted',
          `the next batch: ${describeSends(next)}`,
        ),
      );
    }

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

/** 2.retries: two transient failures, retried after 1 s and 2 s under the same key (and lead keys), then accepted once. */
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
    const held = partnerHolds(rig);
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
      rig.profile === 'valhalla'
        ? check(
            'every attempt carries the same idempotency key',
            rig.sent.length > 1 &&
              keys.size === 1 &&
              deliveries.length === 1 &&
              deliveries[0]?.batch_key === key,
            `${keys.size} batch key(s) over ${rig.sent.length} attempt(s); ${deliveries.length} batch(es) queued` +
              `${deliveries[0] ? `, ${deliveries[0].attempts} attempt(s) recorded` : ''}`,
          )
        : check(
            // No batch idempotency header in this profile: each record carries its lead's own key.
            'every attempt carries the same batch and the same lead keys',
            rig.sent.length > 1 &&
              keys.size === 1 &&
              deliveries.length === 1 &&
              deliveries[0]?.batch_key === key &&
              rig.sent.every((s) => sameSet(s.leadKeys, rig.sent[0]?.leadKeys ?? [])),
            `${keys.size} batch(es) over ${rig.sent.length} attempt(s), the same ${rig.sent[0]?.leadKeys.length ?? 0} lead key(s) in each; ` +
              `${deliveries.length} batch(es) queued${deliveries[0] ? `, ${deliveries[0].attempts} attempt(s) recorded` : ''}`,
          ),
      rig.profile === 'valhalla'
        ? check(
            'accepted, and the partner counts one batch',
            stats.batches.accepted === 1 &&
              records.batches.length === 1 &&
              records.batches[0]?.batchKey === key &&
              stats.leads.accepted === 2 &&
              stats.leads.duplicates === 0,
            `partner: ${stats.batches.received} request(s) received, ${stats.batches.accepted} batch(es) accepted` +
              `${key ? ` (${short(key)})` : ''}, ${stats.leads.accepted} lead(s), ${stats.leads.duplicates} duplicate(s)`,
          )
        : check(
            'accepted, and the partner holds each lead once',
            stats.batches.accepted === 1 &&
              sameSet(held.accepted, rig.sent[0]?.leadKeys ?? []) &&
              held.receivedTwice === 0 &&
              stats.leads.duplicates === 0,
            `partner: ${stats.batches.received} request(s) received, ${stats.batches.accepted} answered record by record, ` +
              `${held.accepted.length} record(s) created, ${held.receivedTwice} lead key(s) received more than once, ${stats.leads.duplicates} conflict(s)`,
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
    const held = partnerHolds(rig);
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
      rig.profile === 'valhalla'
        ? check(
            'the partner never saw a lead key in two batches',
            keysInTwo === 0 && stats.leads.duplicates === 0 && records.batches.length > 0,
            `${Object.keys(records.leadBatches).length} lead key(s) in ${records.batches.length} batch(es): ` +
              `${keysInTwo} in more than one, ${stats.leads.duplicates} duplicate(s) reported by the partner`,
          )
        : check(
            'the partner never received a lead twice',
            held.receivedTwice === 0 && stats.leads.duplicates === 0 && held.accepted.length > 0,
            `${held.accepted.length} record(s) created: ${held.receivedTwice} lead key(s) received more than once, ` +
              `${stats.leads.duplicates} conflict(s) (a lead key or e-mail held already) reported by the partner`,
          ),
    ];
  });

/** Leads refused in the partial answer (their e-mail holds this); the others are taken. */
const REFUSED_MARK = 'refuse-me';

/**
 * A partial answer. Per-record answers (the CRM profile): some leads refused, quarantined with the
 * partner's reason (masked), the others exported, nothing resent, and the answer counted as a failed
 * request for the error rate. The product's own contract has no per-lead refusal: there a refused lead
 * refuses its whole batch (HTTP 422), every lead of it quarantined with the reason, nothing resent.
 */
const partialAnswer: ConformanceScenario = (setup) =>
  withRig(setup, { faults: { refuseLeads: { emailContains: REFUSED_MARK } } }, async (rig) => {
    const rows = [
      leadRow(rig.clock, 'pa1'),
      leadRow(rig.clock, `pa2-${REFUSED_MARK}`),
      leadRow(rig.clock, 'pa3'),
      leadRow(rig.clock, `pa4-${REFUSED_MARK}`),
    ];
    await rig.ingest(rows);
    const rateBefore = await rig.app.requestMonitor.current(rig.app.store.db);
    await rig.cycle();
    const rateAfter = await rig.app.requestMonitor.current(rig.app.store.db);
    // A later cycle must not send any of them again.
    rig.clock.advance(60_000);
    await rig.cycle();
    const leads = await rig.leads();
    const refusedRows = new Set(rows.filter((r) => r.email.includes(REFUSED_MARK)).map((r) => r.external_id));
    const refused = leads.filter((l) => refusedRows.has(l.external_id ?? ''));
    const others = leads.filter((l) => !refusedRows.has(l.external_id ?? ''));
    const held = partnerHolds(rig);
    const ledger = rig.sandbox.leads();
    const refusedAtPartner = Object.values(ledger).filter((l) => l.refusals.length > 0).length;
    const counted = rateAfter.failures - rateBefore.failures;
    const sentOnce = rig.sent.length === 1 && held.receivedTwice === 0;
    const reasonOf = (l: (typeof leads)[number] | undefined) => l?.state_reason ?? 'none';
    if (rig.profile === 'valhalla') {
      const quarantined = leads.filter(
        (l) => l.state === 'quarantined' && /HTTP 422/.test(l.state_reason ?? ''),
      );
      return [
        check(
          'a refused lead refuses its whole batch (the contract has no per-lead refusal)',
          rig.sent[0]?.status === 422 && rig.sent[0]?.outcome === 'permanent' && held.accepted.length === 0,
          `the partner answered ${describeSends(rig.sent.slice(0, 1))} for a batch with ${refused.length} of ${rows.length} lead(s) it refuses; ` +
            `${held.accepted.length} lead(s) taken`,
        ),
        check(
          "every lead of the batch quarantined with the partner's reason",
          quarantined.length === rows.length,
          `${quarantined.length} of ${rows.length} lead(s) quarantined (reason: ${reasonOf(quarantined[0])})`,
        ),
        check(
          'nothing resent, and the refusal counted as a failed request',
          sentOnce && counted === 1,
          `${rig.sent.length} request(s) over 2 cycles; ${counted} failed request(s) counted for the error rate`,
        ),
      ];
    }
    const quarantined = refused.filter(
      (l) => l.state === 'quarantined' && /refused by the partner: /.test(l.state_reason ?? ''),
    );
    const exportedKeys = others.filter((l) => l.state === 'exported').map((l) => leadKey(l));
    return [
      check(
        "the refused leads are quarantined with the partner's reason",
        rig.sent[0]?.outcome === 'accepted' &&
          quarantined.length === refused.length &&
          refused.length === refusedAtPartner,
        `the partner answered ${describeSends(rig.sent.slice(0, 1))}, refusing ${refusedAtPartner} of ${rows.length} lead(s); ` +
          `${quarantined.length} quarantined (reason: ${reasonOf(quarantined[0])})`,
      ),
      check(
        'the other leads of the batch are exported, each held once by the partner',
        exportedKeys.length === others.length && sameSet(held.accepted, exportedKeys),
        `${exportedKeys.length} of ${others.length} exported; the partner created ${held.accepted.length} record(s)`,
      ),
      check(
        'nothing resent, and the partly refused answer counted as a failed request',
        sentOnce && counted === 1,
        `${rig.sent.length} request(s) over 2 cycles, ${held.receivedTwice} lead key(s) received more than once; ` +
          `${counted} failed request(s) counted for the error rate`,
      ),
    ];
  });

/** What the partner's own per-lead ledger holds: the lead keys it took, and how many it received more than once. */
function partnerHolds(rig: Rig): { accepted: string[]; receivedTwice: number } {
  const ledger = Object.entries(rig.sandbox.leads());
  return {
    accepted: ledger.filter(([, l]) => l.acceptedAt !== null).map(([key]) => key),
    receivedTwice: ledger.filter(([, l]) => l.received > 1).length,
  };
}

/** Each scenario on its own: `runConformance` runs them all; tests run one against a broken setup. */
export const conformanceScenarios: Readonly<Record<ConformanceScenarioName, ConformanceScenario>> = {
  endpoint,
  token_refresh: tokenRefresh,
  failure_handling: failureHandling,
  retries,
  total_failure: totalFailure,
  dedup,
  partial_answer: partialAnswer,
};
