import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  AUTH_CREDENTIALS,
  DEFAULT_PROFILE_NAME,
  isPartnerProfileError,
  loadPartnerProfile,
  type PartnerProfile,
  profileFileFor,
  profileSha256,
  STATIC_CREDENTIAL,
  STATIC_CREDENTIAL_RULE,
  STATIC_CREDENTIALS,
  shippedProfileNames,
} from '../partner/index.js';
import { isLoopbackHost } from '../policy/index.js';
import type { ConfigIssue } from './errors.js';

/** The partner profile in force: how requests are written and answers read (src/partner). */
export interface ProfileSettings {
  readonly profile: PartnerProfile;
  /** The file it was read from (a shipped profile's file beside the package, or the operator's). */
  readonly file: string;
  /** SHA-256 of its canonical JSON: what the release manifest signs. */
  readonly sha256: string;
}

/** A profile as evidence and the manifest name it: its name and the SHA-256 of its canonical JSON. */
export interface ProfileIdentity {
  name: string;
  sha256: string;
}

export function profileIdentity(settings: ProfileSettings): ProfileIdentity {
  return { name: settings.profile.name, sha256: settings.sha256 };
}

/** Where and how the partner is reached. */
export interface PartnerSettings {
  /** The partner's base URL (the profile's paths are below it), or null when not configured. */
  readonly url: string | null;
  /**
   * The OAuth2 token endpoint: VALHALLA_PARTNER_TOKEN_URL, else the profile's token path below the
   * base URL; null when the profile's auth is not OAuth2 or neither is set.
   */
  readonly tokenUrl: string | null;
  readonly clientId: string | null;
  readonly clientSecret: string | null;
  /** The API key (auth kind `api_key`), from VALHALLA_PARTNER_API_KEY. */
  readonly apiKey: string | null;
  /** The static bearer token (auth kind `bearer`), from VALHALLA_PARTNER_BEARER_TOKEN. */
  readonly bearerToken: string | null;
  /** The partner profile (VALHALLA_PARTNER_PROFILE; default the shipped `valhalla`, today's contract). */
  readonly profile: ProfileSettings;
  readonly caFile: string | null;
  /** The CA bundle's PEM text, read at start. */
  readonly caPem: string | null;
}

/**
 * Read the partner settings. The profile is read and checked first (refused with its file, the path
 * inside it and why). Phase 4 needs the base URL and the credentials the profile's auth kind uses
 * (OAuth2: a token URL, client id and secret; an API key; a bearer token), and refuses plain
 * `http://`; Phase 3 allows `http://` only to a loopback sandbox. Null when the profile is refused.
 */
export function readPartnerSettings(
  raw: Readonly<Record<string, string | undefined>>,
  phase: 3 | 4,
  cwd: string,
  issues: ConfigIssue[],
): PartnerSettings | null {
  const profile = readProfile(raw.VALHALLA_PARTNER_PROFILE, cwd, issues);
  const url = checkUrl('VALHALLA_PARTNER_URL', raw.VALHALLA_PARTNER_URL, phase, issues);
  const auth = profile?.profile.auth.kind ?? 'oauth2_client_credentials';
  const tokenPath = profile?.profile.endpoints.token?.path;
  const tokenUrl =
    auth !== 'oauth2_client_credentials'
      ? null
      : raw.VALHALLA_PARTNER_TOKEN_URL !== undefined
        ? checkUrl('VALHALLA_PARTNER_TOKEN_URL', raw.VALHALLA_PARTNER_TOKEN_URL, phase, issues)
        : url !== null && tokenPath !== undefined
          ? `${url}/${tokenPath.replace(/^\/+/, '')}`
          : null;
  const clientId = raw.VALHALLA_PARTNER_CLIENT_ID ?? null;
  const clientSecret = raw.VALHALLA_PARTNER_CLIENT_SECRET ?? null;
  const apiKey = raw.VALHALLA_PARTNER_API_KEY ?? null;
  const bearerToken = raw.VALHALLA_PARTNER_BEARER_TOKEN ?? null;
  for (const { variable } of STATIC_CREDENTIALS) {
    const value = raw[variable];
    if (value !== undefined && !STATIC_CREDENTIAL.test(value)) {
      issues.push({ setting: variable, value: '(secret)', problem: STATIC_CREDENTIAL_RULE });
    }
  }
  if (phase === 4) {
    if (raw.VALHALLA_PARTNER_URL === undefined) {
      issues.push({ setting: 'VALHALLA_PARTNER_URL', value: undefined, problem: 'required in Phase 4' });
    }
    // A token URL given but refused above is named there already, not again as missing.
    const given = {
      tokenUrl: tokenUrl ?? raw.VALHALLA_PARTNER_TOKEN_URL ?? null,
      clientId,
      clientSecret,
      apiKey,
      bearerToken,
    };
    for (const { option, variable } of AUTH_CREDENTIALS[auth]) {
      if (given[option] !== null) continue;
      const setting =
        option === 'tokenUrl' && tokenPath !== undefined
          ? `${variable} (or the profile's endpoints.token)`
          : variable;
      issues.push({
        setting,
        value: undefined,
        problem: `required in Phase 4 (the partner profile's auth is ${auth})`,
      });
    }
  }
  let caFile: string | null = null;
  let caPem: string | null = null;
  if (raw.VALHALLA_PARTNER_CA_FILE !== undefined) {
    caFile = resolve(cwd, raw.VALHALLA_PARTNER_CA_FILE);
    if (!existsSync(caFile)) {
      issues.push({ setting: 'VALHALLA_PARTNER_CA_FILE', value: caFile, problem: 'no such file' });
    } else {
      try {
        caPem = readFileSync(caFile, 'utf8');
        // Only CERTIFICATE blocks: the release manifest names each by its fingerprint, and a block
        // of another kind (TRUSTED CERTIFICATE, X509 CERTIFICATE) would be trusted unnamed.
        const others = [...caPem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)]
          .map((m) => m[1])
          .filter((kind) => kind !== 'CERTIFICATE');
        if (!caPem.includes('-----BEGIN CERTIFICATE-----')) {
          issues.push({
            setting: 'VALHALLA_PARTNER_CA_FILE',
            value: caFile,
            problem: 'not a PEM certificate bundle',
          });
        } else if (others.length > 0) {
          issues.push({
            setting: 'VALHALLA_PARTNER_CA_FILE',
            value: caFile,
            problem: `holds PEM blocks other than CERTIFICATE (${[...new Set(others)].join(', ')}): keep only the partner's CA certificates`,
          });
        }
      } catch (cause) {
        issues.push({
          setting: 'VALHALLA_PARTNER_CA_FILE',
          value: caFile,
          problem: `cannot read: ${(cause as Error).message}`,
        });
      }
    }
  }
  if (profile === null) return null;
  return { url, tokenUrl, clientId, clientSecret, apiKey, bearerToken, profile, caFile, caPem };
}

/** The profile VALHALLA_PARTNER_PROFILE names (a shipped name or a file), read and checked; null if refused. */
function readProfile(
  setting: string | undefined,
  cwd: string,
  issues: ConfigIssue[],
): ProfileSettings | null {
  const named = setting ?? DEFAULT_PROFILE_NAME;
  const file = profileFileFor(named, cwd);
  if (file === null) {
    issues.push({
      setting: 'VALHALLA_PARTNER_PROFILE',
      value: named,
      problem: `no shipped profile has this name (shipped: ${shippedProfileNames().join(', ')}); give a profile file's path`,
    });
    return null;
  }
  try {
    const profile = loadPartnerProfile(file);
    return { profile, file, sha256: profileSha256(profile) };
  } catch (error) {
    if (!isPartnerProfileError(error)) throw error;
    // One line per problem: the file, the path inside it and why.
    for (const issue of error.issues) {
      issues.push({
        setting: 'VALHALLA_PARTNER_PROFILE',
        value: file,
        problem: `${issue.path}: ${issue.problem}`,
      });
    }
    return null;
  }
}

function checkUrl(
  name: string,
  value: string | undefined,
  phase: 3 | 4,
  issues: ConfigIssue[],
): string | null {
  if (value === undefined) return null;
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    issues.push({ setting: name, value, problem: 'not a valid URL' });
    return null;
  }
  if (parsed.username || parsed.password) {
    issues.push({
      setting: name,
      value: `${parsed.protocol}//***@${parsed.host}`,
      problem: 'credentials do not belong in the URL',
    });
    return null;
  }
  if (parsed.protocol === 'https:') return value.replace(/\/+$/, '');
  if (parsed.protocol !== 'http:') {
    issues.push({ setting: name, value, problem: 'must be an https:// URL' });
    return null;
  }
  if (phase === 4) {
    issues.push({
      setting: name,
      value,
      problem: 'plain http:// is refused in Phase 4: every outbound request is HTTPS with TLS ≥ 1.2',
    });
    return null;
  }
  if (!isLoopbackHost(parsed.hostname)) {
    issues.push({
      setting: name,
      value,
      problem: 'plain http:// is allowed only to a loopback sandbox (127.0.0.1, localhost) in Phase 3',
    });
    return null;
  }
  return value.replace(/\/+$/, '');
}
