import { randomBytes } from 'node:crypto';
import { createPartnerClientFromConfig } from '../app/index.js';
import type { AuditLog } from '../audit/index.js';
import { type Clock, systemClock } from '../clock/index.js';
import { type Config, profileIdentity } from '../config/index.js';
import { caFingerprints, EVIDENCE_ACTIONS, manifestEndpoint } from '../gates/index.js';
import type { SendOutcome } from '../outbound/index.js';
import type { ProfileLead } from '../partner/index.js';

/**
 * The conformance run against the partner this installation is configured for (`gates conformance
 * --partner configured`), not the built-in sandbox: only what is safe to ask of a partner's own
 * sandbox. Synthetic leads (`SYNTHETIC-` external ids, `.invalid` addresses that reach no one) go
 * out through the real partner client (TLS, token, rate limit, timeouts); nothing is read from or
 * written to the installation's leads. The fault scenarios a real partner cannot be asked to play
 * (outages, 503s, expiring tokens) stay with the sandbox run (`gates conformance`).
 */
export const PARTNER_SCENARIOS = [
  'health',
  'token',
  'endpoint',
  'idempotent_replay',
  'error_handling',
] as const;
export type PartnerScenarioName = (typeof PARTNER_SCENARIOS)[number];

export interface PartnerConformanceResult {
  passed: boolean;
  startedAt: string;
  durationMs: number;
  /** Which partner it ran against: the manifest's endpoints (Phase 4 needs a passing run against them). */
  partner: {
    kind: 'configured';
    url: string | null;
    tokenUrl: string | null;
    caFingerprints: string[] | null;
    /** The partner profile the requests were written and read with (VALHALLA_PARTNER_PROFILE). */
    profile: { name: string; sha256: string };
  };
  scenarios: { name: PartnerScenarioName; passed: boolean; detail: string }[];
}

/** How the run's synthetic leads' and batches' keys begin: the partner's records tell them apart by it. */
export const PARTNER_CONFORMANCE_KEY_PREFIX = 'conformance-';

/** The evidence action: kept apart from the sandbox run's, so neither hides the other. */
export const PARTNER_CONFORMANCE_ACTION = EVIDENCE_ACTIONS.partnerConformance;

function syntheticLead(run: string, n: number, overrides: Partial<ProfileLead> = {}): ProfileLead {
  return {
    lead_key: `${PARTNER_CONFORMANCE_KEY_PREFIX}${run}-${n}`,
    external_id: `SYNTHETIC-conformance-${run}-${n}`,
    name: `Conformance Check ${n}`,
    email: `conformance.${run}.${n}@conformance.invalid`,
    phone: null,
    company: null,
    score: 80,
    source_ts: Date.now() - 3_600_000,
    value: null,
    attributes: {},
    ...overrides,
  };
}

/** Per-lead outcomes of an accepted answer, when the profile reads them: `2 duplicate`, `1 refused`. */
function perLead(outcome: SendOutcome): string {
  if (outcome.kind !== 'accepted' || !outcome.leads) return '';
  const counts = new Map<string, number>();
  for (const lead of outcome.leads) counts.set(lead.outcome, (counts.get(lead.outcome) ?? 0) + 1);
  return ` (per lead: ${[...counts].map(([k, n]) => `${n} ${k}`).join(', ')})`;
}

/** Every lead of an accepted per-lead answer came to `outcome`. */
function everyLead(result: SendOutcome, outcome: 'duplicate' | 'refused', sent: number): boolean {
  return (
    result.kind === 'accepted' &&
    !!result.leads &&
    result.leads.length === sent &&
    result.leads.every((l) => l.outcome === outcome)
  );
}

/** `HTTP 200` / `no answer (ECONNREFUSED)`: an outcome in words, with no lead data. */
function said(outcome: { kind: string; status?: number; code?: string; message?: string }): string {
  const status =
    outcome.status === undefined
      ? `no answer${outcome.code ? ` (${outcome.code})` : ''}`
      : `HTTP ${outcome.status}`;
  return `${status}, ${outcome.kind}`;
}

/** Run the scenarios against the configured partner, in order; one that throws fails with its error. */
export async function runPartnerConformance(options: {
  config: Config;
  clock?: Clock;
}): Promise<PartnerConformanceResult> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const began = Date.now();
  const partner = {
    kind: 'configured' as const,
    // As the release manifest names them: a secret in a URL never reaches the audit chain.
    url: manifestEndpoint(config.partner.url),
    tokenUrl: manifestEndpoint(config.partner.tokenUrl),
    caFingerprints: config.partner.caPem === null ? null : caFingerprints(config.partner.caPem),
    profile: profileIdentity(config.partner.profile),
  };
  const scenarios: PartnerConformanceResult['scenarios'] = [];
  const record = (name: PartnerScenarioName, passed: boolean, detail: string) =>
    scenarios.push({ name, passed, detail });
  let client: ReturnType<typeof createPartnerClientFromConfig> | null = null;
  try {
    client = createPartnerClientFromConfig(config, clock);
  } catch (error) {
    for (const name of PARTNER_SCENARIOS) record(name, false, (error as Error).message);
  }
  if (client !== null) {
    const run = randomBytes(6).toString('hex');
    const requestMs = config.policy.apiTimeoutSeconds * 1000;
    const attempt = async (name: PartnerScenarioName, work: () => Promise<[boolean, string]>) => {
      try {
        const [passed, detail] = await work();
        record(name, passed, detail);
      } catch (error) {
        record(name, false, `${(error as Error).name}: ${(error as Error).message}`);
      }
    };
    try {
      await attempt('health', async () => {
        const health = await client!.health();
        return [
          health.ok,
          health.ok ? `HTTP ${health.status}` : `failed: ${health.error ?? health.status ?? health.code}`,
        ];
      });
      await attempt('token', async () => {
        const { auth } = config.partner.profile.profile;
        if (auth.kind !== 'oauth2_client_credentials') {
          // A static credential: nothing to fetch; the endpoint scenario shows whether it is taken.
          return [true, `the profile's auth is ${auth.kind}: a static credential, no token endpoint to ask`];
        }
        const token = await client!.ensureToken(requestMs);
        if (token.kind !== 'ok') return [false, `no token: ${said(token)}: ${token.message}`];
        const left = token.expiresAtMs - clock.now();
        // No expiry mid-batch: the token outlives one whole request's deadline.
        return [
          left > requestMs,
          `a token valid ${Math.round(left / 1000)} s more (a request may take ${requestMs / 1000} s)`,
        ];
      });
      const batch = {
        batchKey: `${PARTNER_CONFORMANCE_KEY_PREFIX}${run}-batch`,
        leads: [syntheticLead(run, 1), syntheticLead(run, 2)],
      };
      await attempt('endpoint', async () => {
        const outcome = await client!.sendBatch(batch);
        const ok = outcome.kind === 'accepted';
        return [
          ok,
          `POST a batch of ${batch.leads.length} synthetic leads: ${said(outcome)}${perLead(outcome)}`,
        ];
      });
      await attempt('idempotent_replay', async () => {
        const outcome = await client!.sendBatch(batch);
        if (outcome.kind !== 'accepted') return [false, `the same batch again, same key: ${said(outcome)}`];
        const body = outcome.body;
        // The product's contract says so in its body; a profile's per-lead answer says each lead is a duplicate.
        const notTwice =
          everyLead(outcome, 'duplicate', batch.leads.length) ||
          (body !== null &&
            (body.replayed === true || body.duplicates === batch.leads.length || body.accepted === 0));
        return [
          notTwice,
          `the same batch again under the same key: ${said(outcome)}${perLead(outcome)}; ${notTwice ? 'the partner says it is a replay (or holds every lead), not new leads' : "the partner's answer does not say it is a replay"}`,
        ];
      });
      await attempt('error_handling', async () => {
        const invalid = {
          batchKey: `${PARTNER_CONFORMANCE_KEY_PREFIX}${run}-invalid`,
          leads: [syntheticLead(run, 3, { email: 'not-an-address', score: 1000 })],
        };
        const outcome = await client!.sendBatch(invalid);
        // Refused whole (a 4xx), or answered with the lead refused by a per-lead answer.
        // A refusal of the content (400, 409, 422 …); not a path, method or credential it never read.
        const notRead = new Set([401, 403, 404, 405]);
        const refused =
          (outcome.kind === 'permanent' &&
            outcome.status !== undefined &&
            outcome.status < 500 &&
            !notRead.has(outcome.status)) ||
          everyLead(outcome, 'refused', invalid.leads.length);
        return [
          refused,
          `a batch the contract forbids (an e-mail that is none, score 1000): ${said(outcome)}${perLead(outcome)}${refused ? ': refused, not retried' : ''}`,
        ];
      });
    } finally {
      await client.close();
    }
  }
  return {
    passed: scenarios.length === PARTNER_SCENARIOS.length && scenarios.every((s) => s.passed),
    startedAt: new Date(began).toISOString(),
    durationMs: Date.now() - began,
    partner,
    scenarios,
  };
}

/** Append the result to the audit chain (the manifest's partner is judged by it). */
export async function recordPartnerConformance(
  audit: AuditLog,
  result: PartnerConformanceResult,
  actor: string,
): Promise<void> {
  await audit.record({ actor, action: PARTNER_CONFORMANCE_ACTION, details: { ...result } });
}
