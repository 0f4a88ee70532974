import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { type Config, loadConfig } from '../config/index.js';
import type { GateClearance } from '../guard/index.js';
import { shippedProfileSha256 } from '../partner/index.js';
import { SANDBOX_PROFILES, type SandboxPartner, type SandboxProfile } from '../sandbox/index.js';

/**
 * What every private installation has: its own folder and SQLite database, a fresh pseudonym secret,
 * the installation's policy file and operator, quiet logs, no metrics port and no dashboard.
 */
function privateEnv(dir: string, name: string, installation: Config): Record<string, string> {
  return {
    VALHALLA_DATA_DIR: dir,
    VALHALLA_DATABASE_URL: join(dir, `${name}.db`),
    VALHALLA_POLICY_FILE: installation.policyFile,
    VALHALLA_PSEUDONYM_SECRET: randomBytes(32).toString('hex'),
    VALHALLA_OPERATOR: installation.operator,
    VALHALLA_LOG_LEVEL: 'warn',
    VALHALLA_LOG_FILE: join(dir, `${name}.log`),
    VALHALLA_METRICS_PORT: 'off',
    VALHALLA_SERVER_PORT: 'off',
  };
}

/**
 * The configuration of a private Phase 4 installation that sends only to an in-process sandbox
 * partner. What the rollback drill, the conformance run and the simulation rehearse with.
 */
export function privatePhase4Config(options: {
  dir: string;
  /** Names the database and the log file in `dir`. */
  name: string;
  installation: Config;
  partner: SandboxPartner;
  leadsPerCycle?: number;
  env?: Record<string, string>;
}): Config {
  const { dir, name, installation, partner } = options;
  return loadConfig({
    cwd: dir,
    env: {
      ...privateEnv(dir, name, installation),
      VALHALLA_PHASE: '4',
      VALHALLA_DRY_RUN: '0',
      VALHALLA_DISABLE_OUTBOUND: '0',
      VALHALLA_REAL_DATA_INGEST: '1',
      VALHALLA_MAX_LEADS_PER_CYCLE: String(options.leadsPerCycle ?? 5),
      VALHALLA_PARTNER_URL: partner.url,
      ...partnerProfileEnv(installation, partner),
      VALHALLA_PARTNER_CA_FILE: partner.caFile ?? '',
      ...options.env,
    },
  });
}

/**
 * The profile and credentials of the contract the sandbox plays. When it plays the installation's
 * own profile, the installation's file is used (so what is rehearsed is what is signed, by SHA-256);
 * otherwise the shipped profile of that name (the rollback drill always plays the product's own).
 */
function partnerProfileEnv(installation: Config, partner: SandboxPartner): Record<string, string> {
  const own = installation.partner.profile;
  const profile = shippedProfilePlayed(installation) === partner.profile ? own.file : partner.profile;
  if (partner.bearerToken !== null) {
    return { VALHALLA_PARTNER_PROFILE: profile, VALHALLA_PARTNER_BEARER_TOKEN: partner.bearerToken };
  }
  return {
    VALHALLA_PARTNER_PROFILE: profile,
    VALHALLA_PARTNER_TOKEN_URL: partner.tokenUrl,
    VALHALLA_PARTNER_CLIENT_ID: partner.clientId,
    VALHALLA_PARTNER_CLIENT_SECRET: partner.clientSecret,
  };
}

/**
 * The shipped profile the installation speaks, when the sandbox plays it: one of its names AND its
 * content (SHA-256), so that a file of the operator's own under a shipped name is not taken for it.
 */
function shippedProfilePlayed(installation: Config): SandboxProfile | null {
  const { profile, sha256 } = installation.partner.profile;
  const name = SANDBOX_PROFILES.find((p) => p === profile.name);
  if (name === undefined) return null;
  return shippedProfileSha256(name) === sha256 ? name : null;
}

/**
 * The contract the sandbox plays for the conformance suite: the installation's own profile when the
 * sandbox plays it, else the shipped profile of the same auth family in its stead (OAuth2: the
 * product's own contract; an API key or a bearer token: the CRM's static token). The suite proves the
 * engine's handling of a partner (retries, refusals, outages, dedup) under that family; the
 * installation's own mapping is proven against its partner by `--partner configured`, which the
 * release manifest needs.
 */
export function conformanceProfileFor(installation: Config): { played: SandboxProfile; standIn: boolean } {
  const { profile } = installation.partner.profile;
  const own = shippedProfilePlayed(installation);
  if (own !== null) return { played: own, standIn: false };
  return {
    played: profile.auth.kind === 'oauth2_client_credentials' ? 'valhalla' : 'crm-batch-contacts',
    standIn: true,
  };
}

/**
 * The sandbox contract that plays the installation's configured profile, or a refusal saying why
 * (the sandbox plays only the shipped contracts).
 */
export function sandboxProfileFor(
  installation: Config,
  /** What to do instead, for the refusal. */
  instead: string,
): { ok: true; profile: SandboxProfile } | { ok: false; message: string } {
  const { profile, file } = installation.partner.profile;
  const played = shippedProfilePlayed(installation);
  if (played !== null) return { ok: true, profile: played };
  return {
    ok: false,
    message:
      `the installation's partner profile "${profile.name}" (${file}) is not one the built-in sandbox partner can play ` +
      `(it plays ${SANDBOX_PROFILES.join(' and ')}): ${instead}`,
  };
}

/** The same for Phase 3 (dry runs only, no partner): the simulation's stability run. */
export function privatePhase3Config(options: { dir: string; name: string; installation: Config }): Config {
  const { dir, name, installation } = options;
  return loadConfig({
    cwd: dir,
    env: {
      ...privateEnv(dir, name, installation),
      VALHALLA_PHASE: '3',
      VALHALLA_MAX_LEADS_PER_CYCLE: String(installation.limits.leadsPerCycle),
    },
  });
}

/** The gates of a private installation: it sends only to its own sandbox, and that alone is cleared. */
export function privateGates(what: string): GateClearance {
  return {
    check: async () => ({ cleared: true, reason: `${what}: a private database and the sandbox partner` }),
  };
}
