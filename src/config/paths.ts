/**
 * Where the product is installed: its package root, and the policy file shipped with it.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder the product is installed in: the nearest one above this module with a package.json. */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

/** The policy file shipped with the product, used when VALHALLA_POLICY_FILE is not set. */
export const DEFAULT_POLICY_FILE = join(PACKAGE_ROOT, 'config', 'policy.json');

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return from;
  }
}
