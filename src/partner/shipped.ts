// The profiles shipped with the product (config/partners/<name>.json beside the package), and how a
// setting names one: a shipped profile by its name, any other by its file's path.
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../files/index.js';
import { loadPartnerProfile, profileSha256 } from './load-profile.js';
import type { PartnerProfile } from './profile-schema.js';

/** Where the shipped profiles are: beside the package, never the working folder. */
export const SHIPPED_PROFILES_DIR = join(PACKAGE_ROOT, 'config', 'partners');

/** The profile used when none is named: the product's own contract. */
export const DEFAULT_PROFILE_NAME = 'valhalla';

/** A name that can only mean a shipped profile: a slug, no folder, no `.json`. */
const SHIPPED_NAME = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;

/** The shipped profiles' names, sorted. */
export function shippedProfileNames(): string[] {
  try {
    return readdirSync(SHIPPED_PROFILES_DIR)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length))
      .sort();
  } catch {
    return [];
  }
}

/**
 * The file a setting names: a bare name (`crm-batch-contacts`) is a shipped profile; anything else
 * is a path, relative to `cwd`. Null for a bare name no shipped profile has.
 */
export function profileFileFor(setting: string, cwd: string): string | null {
  if (!SHIPPED_NAME.test(setting)) return resolve(cwd, setting);
  return shippedProfileNames().includes(setting) ? join(SHIPPED_PROFILES_DIR, `${setting}.json`) : null;
}

const shipped = new Map<string, { profile: PartnerProfile; sha256: string }>();

/** A shipped profile and its SHA-256, read and hashed once per process. */
function readShipped(name: string): { profile: PartnerProfile; sha256: string } {
  let read = shipped.get(name);
  if (read === undefined) {
    const profile = loadPartnerProfile(join(SHIPPED_PROFILES_DIR, `${name}.json`));
    read = { profile, sha256: profileSha256(profile) };
    shipped.set(name, read);
  }
  return read;
}

/**
 * A shipped profile by name, read once per process. Throws `PartnerProfileError` if it was damaged
 * (or no shipped profile has the name: `PROFILE_UNREADABLE`).
 */
export function shippedProfile(name: string): PartnerProfile {
  return readShipped(name).profile;
}

/** The SHA-256 of a shipped profile (`profileSha256`), hashed once per process. */
export function shippedProfileSha256(name: string): string {
  return readShipped(name).sha256;
}

/** The shipped default profile (`valhalla`), read once. */
export function shippedDefaultProfile(): PartnerProfile {
  return shippedProfile(DEFAULT_PROFILE_NAME);
}
