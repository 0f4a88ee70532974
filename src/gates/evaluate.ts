/**
 * The policy's `verify_phase4_gates`: every gate judged item by item, the verified items from the
 * latest evidence (how recent each must be: EVIDENCE_MAX_AGE_DAYS), the attested ones and the
 * sign-offs from the signatures valid now; and the conformance run the manifest's partner needs.
 */
import type { AuditLog, AuditVerification } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config, ProfileIdentity } from '../config/index.js';
import {
  type AuditAction,
  canonicalJson,
  HARD_CAPS,
  heapLimitWithinPolicy,
  workerRestartRssBytes,
} from '../policy/index.js';
import { latestHeartbeat, readInstallationId, type SignerRole, type Store } from '../store/index.js';
import { EVIDENCE_ACTIONS, type EvidenceCheck, GATES, type GateItem } from './catalogue.js';
import { buildManifest, type ManifestLimits, manifestEndpoint, type ReleaseManifest } from './manifest.js';
import { manifestStatus } from './manifest-status.js';
import { activationInvalid, roleOfSignoff, signatureItem, validActivation } from './signature-items.js';
import { validSignatures } from './signatures.js';
import type { GateStatus, GatesReport, ItemStatus } from './status.js';

const DAY_MS = 86_400_000;
/** How recent each kind of evidence must be: a test alert this week, a drill/run/stability this month. */
export const EVIDENCE_MAX_AGE_DAYS = {
  alertsTest: 7,
  dashboardCheck: 7,
  drill: 30,
  conformance: 30,
  stability: 30,
  heartbeat: 1,
};
/** Gate 5's "real-time lead flow": an event on the dashboard's live stream within this. */
export const LIVE_FLOW_MAX_MS = 1_000;

export interface GatesDeps {
  store: Store;
  config: Config;
  audit: AuditLog;
  clock: Clock;
  /**
   * The limits in force in this process (a running worker's, lowered or raised since its start);
   * default the configuration's. Judged against the approved limits like the configuration's.
   */
  limits?: () => ManifestLimits;
}

interface EvidenceEntry {
  at: number;
  seq: number;
  details: Record<string, unknown>;
}

/** The audit actions that change what the gates say: any new one makes a cached answer stale. */
export const GATE_ACTIONS: readonly AuditAction[] = [
  'signer.added',
  'signer.revoked',
  'signature.recorded',
  'policy.changed',
  // The limits in force changed in a running worker: judged again at once.
  'limits.changed',
  ...Object.values(EVIDENCE_ACTIONS),
];

/** How many of the newest conformance runs are searched for one made for the profile in force. */
const EVIDENCE_LOOKBACK = 50;

/**
 * The policy's `verify_phase4_gates`: every gate, item by item, from the evidence and the signatures.
 * `chain`: an audit-chain verification to use instead of walking the whole chain again.
 */
export async function evaluateGates(
  deps: GatesDeps,
  options: { chain?: AuditVerification } = {},
): Promise<GatesReport> {
  const { store, config, audit, clock } = deps;
  const now = clock.now();
  const installationId = await readInstallationId(store.db);
  const running =
    installationId === undefined ? null : buildManifest(config, installationId, deps.limits?.());
  const signatures = await validSignatures(store.db, running);
  const evidence = (entry: { at: number; seq: number; details: string }): EvidenceEntry => ({
    at: entry.at,
    seq: entry.seq,
    details: JSON.parse(entry.details) as Record<string, unknown>,
  });
  const latest = async (action: AuditAction): Promise<EvidenceEntry | null> => {
    const entry = await audit.latest(action);
    return entry ? evidence(entry) : null;
  };
  // A conformance run is evidence for the profile it was made for: the newest one for the profile in
  // force counts, so a run for another profile (tried for one command) neither counts nor hides it.
  const forProfile = async (action: AuditAction): Promise<EvidenceEntry | null> => {
    const wanted = running?.partner.profile ?? null;
    if (wanted === null) return latest(action);
    const entries = (await audit.recent(action, EVIDENCE_LOOKBACK)).map(evidence);
    const madeFor = (e: EvidenceEntry) => {
      const details = e.details as { profile?: unknown; partner?: { profile?: unknown } };
      return details.profile ?? details.partner?.profile ?? null;
    };
    return entries.find((e) => canonicalJson(madeFor(e)) === canonicalJson(wanted)) ?? entries[0] ?? null;
  };
  const [alertsTest, dashboardCheck, drill, conformance, stability, partnerRun, chain, beat] =
    await Promise.all([
      latest(EVIDENCE_ACTIONS.alertsTest),
      latest(EVIDENCE_ACTIONS.dashboardCheck),
      latest(EVIDENCE_ACTIONS.drill),
      forProfile(EVIDENCE_ACTIONS.conformance),
      latest(EVIDENCE_ACTIONS.stability),
      forProfile(EVIDENCE_ACTIONS.partnerConformance),
      options.chain ?? audit.verify(),
      latestHeartbeat(store.db),
    ]);
  // Go-live evidence is judged as of the CEO's activation (it was fresh when Phase 4 was approved,
  // and does not expire under a running Phase 4); before an activation, as of now. A newer record
  // still replaces it: a drill that fails after go-live turns its items red.
  const activationRow = validActivation(signatures);
  const reference = activationRow ? Number(activationRow.recorded_at) : now;

  const iso = (at: number) => new Date(at).toISOString();
  const fresh = (entry: EvidenceEntry | null, days: number): entry is EvidenceEntry =>
    entry !== null && reference - entry.at <= days * DAY_MS;
  const result = (
    ok: boolean,
    detail: string,
    at?: number,
  ): Pick<ItemStatus, 'state' | 'detail' | 'date'> => ({
    state: ok ? 'ok' : 'missing',
    detail,
    date: at === undefined ? null : iso(at),
  });
  const evidenceAge = (what: string, entry: EvidenceEntry | null, days: number) =>
    entry === null ? `no ${what} recorded` : `the last ${what} (${iso(entry.at)}) is older than ${days} days`;

  function verifiedItem(
    check: EvidenceCheck,
  ): Pick<ItemStatus, 'state' | 'detail' | 'date'> & { signer?: string | null } {
    const p = config.policy;
    switch (check) {
      case 'audit_chain':
        return result(
          chain.ok,
          chain.ok
            ? `the audit chain verifies: ${chain.entries} entries`
            : 'the audit chain does not verify (valhalla audit verify)',
        );
      case 'limit:leads_per_cycle':
        return result(
          config.limits.leadsPerCycle <= HARD_CAPS.leadsPerCycle,
          `${config.limits.leadsPerCycle} leads/cycle (hard maximum ${HARD_CAPS.leadsPerCycle})`,
        );
      case 'limit:actions_per_cycle':
        return result(
          p.actionsPerCycle > 0 &&
            p.actionsPerCycle <= HARD_CAPS.actionsPerCycle &&
            config.limits.actionsPerCycle <= HARD_CAPS.actionsPerCycle,
          `Phase 4: ${p.actionsPerCycle} actions/cycle (hard maximum ${HARD_CAPS.actionsPerCycle})`,
        );
      case 'limit:rate':
        return result(
          config.limits.rateLimitPerSecond <= HARD_CAPS.rateLimitPerSecond,
          `${config.limits.rateLimitPerSecond} requests/s in any ${p.rateWindowMs} ms window`,
        );
      case 'limit:memory': {
        // The policy's memory per process (docs/memory.md): the worker's whole V8 heap (old space and
        // young generation, V8's heap_size_limit) within the number, nothing on top.
        const recent = beat !== undefined && now - beat.at <= EVIDENCE_MAX_AGE_DAYS.heartbeat * DAY_MS;
        const heapMb = (bytes: number) => Math.round(bytes / 1048576);
        const inForce =
          recent &&
          beat.heap_limit_bytes !== null &&
          heapLimitWithinPolicy(beat.heap_limit_bytes, p.memoryPerProcessMb);
        return result(
          p.memoryPerProcessMb <= HARD_CAPS.memoryPerProcessMb && inForce,
          !recent
            ? 'no worker heartbeat in the last day: run `valhalla run` (its worker reports its heap limit)'
            : inForce
              ? `worker heap limit ${heapMb(beat.heap_limit_bytes ?? 0)} MB, within the policy's ${p.memoryPerProcessMb} MB per process (reported by pid ${beat.pid}); RSS: worker restarted past ${heapMb(workerRestartRssBytes(p.memoryPerProcessMb))} MB`
              : beat.heap_limit_bytes === null
                ? `the worker did not report its heap limit; the policy's ${p.memoryPerProcessMb} MB per process is not shown in force`
                : `the worker's heap limit ${heapMb(beat.heap_limit_bytes)} MB is over the policy's ${p.memoryPerProcessMb} MB per process (pid ${beat.pid})`,
          recent ? beat.at : undefined,
        );
      }
      case 'limit:rollback_threshold':
        return result(
          p.errorRateTolerance <= HARD_CAPS.errorRateTolerance,
          `roll back above ${p.errorRateTolerance * 100}% failures (or ${p.errorRateConsecutiveFailures} in a row)`,
        );
      case 'limit:daily_leads':
        return result(
          p.dailyLeads <= HARD_CAPS.dailyLeads,
          `${p.dailyLeads} leads/day (maximum ${HARD_CAPS.dailyLeads})`,
        );
      case 'limit:budget':
        return result(
          p.budgetExposure <= HARD_CAPS.budgetExposure,
          `$${p.budgetExposure.toLocaleString('en-US')} (maximum $${HARD_CAPS.budgetExposure.toLocaleString('en-US')})`,
        );
      case 'alerts:slack':
      case 'alerts:email': {
        const channel = check === 'alerts:slack' ? 'slack' : 'email';
        const configured =
          channel === 'slack' ? config.alerts.slackWebhookUrl !== null : config.alerts.smtpUrl !== null;
        if (!configured) return result(false, `no ${channel} channel configured`);
        if (!fresh(alertsTest, EVIDENCE_MAX_AGE_DAYS.alertsTest)) {
          return result(
            false,
            `${evidenceAge('test alert', alertsTest, EVIDENCE_MAX_AGE_DAYS.alertsTest)}: run \`valhalla alerts test\``,
          );
        }
        const results = (alertsTest.details.results ?? []) as {
          channel: string;
          ok: boolean;
          error?: string | null;
        }[];
        const mine = results.find((r) => r.channel === channel);
        return result(
          mine?.ok === true,
          mine?.ok
            ? `test alert delivered by ${channel}`
            : `the last test alert was not delivered by ${channel}${mine?.error ? `: ${mine.error}` : ''}`,
          alertsTest.at,
        );
      }
      case 'dashboard:live_flow': {
        if (!fresh(dashboardCheck, EVIDENCE_MAX_AGE_DAYS.dashboardCheck)) {
          return result(
            false,
            `${evidenceAge('dashboard check', dashboardCheck, EVIDENCE_MAX_AGE_DAYS.dashboardCheck)}: run \`valhalla dashboard check\``,
          );
        }
        const d = dashboardCheck.details as {
          passed?: boolean;
          url?: string;
          latencyMs?: number | null;
          checks?: { name: string; ok: boolean }[];
        };
        const failed = (d.checks ?? []).filter((c) => !c.ok).map((c) => c.name);
        const flowChecked = (d.checks ?? []).some((c) => c.name === 'live lead flow' && c.ok);
        const inTime = typeof d.latencyMs === 'number' && d.latencyMs <= LIVE_FLOW_MAX_MS;
        const ok = d.passed === true && failed.length === 0 && flowChecked && inTime;
        return result(
          ok,
          ok
            ? `${d.url} answered; an event reached its live stream in ${d.latencyMs} ms`
            : `the last dashboard check failed: ${failed.join(', ') || (inTime ? 'not passed' : `no event on the live stream within ${LIVE_FLOW_MAX_MS} ms`)}`,
          dashboardCheck.at,
        );
      }
      case 'drill:tested':
      case 'drill:time':
      case 'drill:clean': {
        if (!fresh(drill, EVIDENCE_MAX_AGE_DAYS.drill)) {
          return result(
            false,
            `${evidenceAge('rollback drill', drill, EVIDENCE_MAX_AGE_DAYS.drill)}: run \`valhalla drill rollback\``,
          );
        }
        const d = drill.details as {
          passed?: boolean;
          durationMs?: number;
          checks?: { name: string; ok: boolean }[];
        };
        if (check === 'drill:tested')
          return result(true, `rollback drill run (${d.passed ? 'passed' : 'failed'})`, drill.at);
        if (check === 'drill:time') {
          const limit = p.rollbackMaxMinutes * 60_000;
          return result(
            typeof d.durationMs === 'number' && d.durationMs < limit,
            `drill took ${((d.durationMs ?? 0) / 1000).toFixed(1)} s (limit ${p.rollbackMaxMinutes} min)`,
            drill.at,
          );
        }
        const failed = (d.checks ?? []).filter((c) => !c.ok).map((c) => c.name);
        return result(
          d.passed === true && failed.length === 0,
          failed.length === 0 ? 'state verified clean after the drill' : `not clean: ${failed.join(', ')}`,
          drill.at,
        );
      }
      case 'stability': {
        if (!fresh(stability, EVIDENCE_MAX_AGE_DAYS.stability)) {
          return result(
            false,
            `${evidenceAge('stability verification', stability, EVIDENCE_MAX_AGE_DAYS.stability)}: run \`valhalla stability verify\``,
          );
        }
        const s = stability.details as {
          passed?: boolean;
          hours?: number;
          checks?: { name: string; passed: boolean }[];
        };
        const failed = (s.checks ?? []).filter((c) => !c.passed).map((c) => c.name);
        return result(
          s.passed === true && (s.hours ?? 0) >= p.stabilityHours,
          s.passed
            ? `${s.hours} h of Phase 3 verified stable`
            : `stability not shown: ${failed.join(', ') || 'failed'}`,
          stability.at,
        );
      }
      default: {
        if (check.startsWith('conformance:')) {
          const scenario = check.slice('conformance:'.length);
          if (!fresh(conformance, EVIDENCE_MAX_AGE_DAYS.conformance)) {
            return result(
              false,
              `${evidenceAge('conformance run', conformance, EVIDENCE_MAX_AGE_DAYS.conformance)}: run \`valhalla gates conformance\``,
            );
          }
          // Evidence for the profile the installation speaks: a run made under another one does not count.
          const ranFor = (conformance.details.profile ?? null) as ProfileIdentity | null;
          const speaks = running?.partner.profile ?? null;
          if (speaks !== null && canonicalJson(ranFor) !== canonicalJson(speaks)) {
            return result(
              false,
              `the last conformance run was for partner profile ${profileWords(ranFor)}, not the configured ${profileWords(speaks)}: run \`valhalla gates conformance\``,
              conformance.at,
            );
          }
          const scenarios = (conformance.details.scenarios ?? []) as { name: string; passed: boolean }[];
          const found = scenarios.find((s) => s.name === scenario);
          return result(
            found?.passed === true,
            found
              ? `conformance scenario ${scenario} ${found.passed ? 'passed' : 'FAILED'} against the ${conformance.details.partner === 'sandbox' ? 'built-in sandbox partner' : String(conformance.details.partner)}${standInWords(conformance.details.played)}`
              : `conformance scenario ${scenario} not run`,
            conformance.at,
          );
        }
        // signoff:<role>
        const role = check.slice('signoff:'.length) as SignerRole;
        return signatureItem(signatures, 'signoff', role, null);
      }
    }
  }

  const manifest = manifestStatus(running, signatures, config.sources);
  // Phase 4 needs a passing conformance run against the manifest's own partner (not only the sandbox).
  if (running !== null) {
    const problem = partnerRunProblem(running, partnerRun, (entry) =>
      fresh(entry, EVIDENCE_MAX_AGE_DAYS.conformance),
    );
    if (problem !== null) manifest.problems.push(problem);
  }
  // First: a Phase 4 start refused for the manifest names each difference and its fix.
  const missing: string[] = manifest.problems.map((p) => `release manifest: ${p}`);
  const gates: GateStatus[] = GATES.map((gate) => {
    const items = gate.items.map((item: GateItem): ItemStatus => {
      const base = {
        gate: gate.gate,
        id: item.id,
        text: item.text,
        kind: item.check.kind,
        role: item.check.kind === 'attested' ? item.check.role : roleOfSignoff(item.check.evidence),
        signer: null,
      };
      const status =
        item.check.kind === 'attested'
          ? signatureItem(signatures, 'attestation', item.check.role, item.id)
          : verifiedItem(item.check.evidence);
      const full: ItemStatus = { ...base, signer: null, ...status };
      if (full.state !== 'ok') missing.push(`gate ${gate.gate} ${item.id}: ${full.detail}`);
      return full;
    });
    return { gate: gate.gate, title: gate.title, ok: items.every((i) => i.state === 'ok'), items };
  });
  const activation = signatureItem(
    { valid: activationRow ? [activationRow] : [], invalid: activationInvalid(signatures, activationRow) },
    'activation',
    'ceo',
    null,
  );
  if (activation.state !== 'ok') missing.push(`activation: ${activation.detail}`);
  return {
    at: iso(now),
    policyHash: config.policyHash,
    manifest,
    gates,
    activation: {
      state: activation.state,
      detail: activation.detail,
      signer: activation.signer ?? null,
      date: activation.date,
    },
    cleared: missing.length === 0,
    missing,
  };
}

/** ` (playing crm-batch-contacts in the profile's stead)` for a stand-in run; empty otherwise. */
function standInWords(played: unknown): string {
  const p = played as { profile?: string; standIn?: boolean } | undefined;
  return p?.standIn === true ? ` (playing ${p.profile} in the profile's stead)` : '';
}

/** `crm-batch-contacts (sha256 3f2a…)`, or `none` for a run recorded before profiles were named. */
function profileWords(profile: ProfileIdentity | null): string {
  return profile === null ? 'none' : `${profile.name} (sha256 ${profile.sha256.slice(0, 12)}…)`;
}

/** Why the latest configured-partner conformance run does not stand for the manifest's partner, or null. */
function partnerRunProblem(
  running: ReleaseManifest,
  entry: EvidenceEntry | null,
  isFresh: (entry: EvidenceEntry | null) => boolean,
): string | null {
  const fix = 'run `valhalla gates conformance --partner configured`';
  if (entry === null) return `no conformance run against the configured partner: ${fix}`;
  if (!isFresh(entry)) {
    return `the last conformance run against the configured partner is older than ${EVIDENCE_MAX_AGE_DAYS.conformance} days: ${fix}`;
  }
  const d = entry.details as {
    passed?: boolean;
    partner?: {
      url?: string | null;
      tokenUrl?: string | null;
      caFingerprints?: string[] | null;
      profile?: { name: string; sha256: string };
    };
    scenarios?: { name: string; passed: boolean }[];
  };
  const ranAgainst = {
    url: manifestEndpoint(d.partner?.url ?? null),
    tokenUrl: manifestEndpoint(d.partner?.tokenUrl ?? null),
    caFingerprints: d.partner?.caFingerprints ?? null,
  };
  const partner = {
    url: running.partner.url,
    tokenUrl: running.partner.tokenUrl,
    caFingerprints: running.partner.caFingerprints,
  };
  if (canonicalJson(ranAgainst) !== canonicalJson(partner)) {
    return `the last conformance run against a configured partner ran against ${ranAgainst.url ?? 'none'} (CA ${ranAgainst.caFingerprints === null ? 'the system’s' : ranAgainst.caFingerprints.map((f) => f.slice(0, 12)).join(', ')}), not the manifest's ${partner.url ?? 'none'} (CA ${partner.caFingerprints === null ? 'the system’s' : partner.caFingerprints.map((f) => f.slice(0, 12)).join(', ')}): ${fix}`;
  }
  // Spoken to under another profile (other paths, auth, mapping or answer reading): it does not count.
  const ranWith = d.partner?.profile ?? null;
  const profile = running.partner.profile ?? null;
  if (canonicalJson(ranWith) !== canonicalJson(profile)) {
    return `the last conformance run against the configured partner spoke partner profile ${profileWords(ranWith)}, not the manifest's ${profileWords(profile)}: ${fix}`;
  }
  if (d.passed !== true) {
    const failed = (d.scenarios ?? []).filter((s) => !s.passed).map((s) => s.name);
    return `the last conformance run against the configured partner failed (${failed.join(', ') || 'not passed'}): ${fix}`;
  }
  return null;
}
