/**
 * Where the product is installed: its package root, and the policy file shipped with it.
 */
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../files/index.js';

export { PACKAGE_ROOT };

/** The policy file shipped with the product, used when VALHALLA_POLICY_FILE is not set. */
export const DEFAULT_POLICY_FILE = join(PACKAGE_ROOT, 'config', 'policy.json');
