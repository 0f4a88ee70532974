/**
 * The pseudonym secret: given directly in VALHALLA_PSEUDONYM_SECRET or read from its file (which must
 * not be readable by group or others), and long enough.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { ConfigIssue } from './errors.js';
import type { VariableName } from './variables.js';

const MIN_SECRET_LENGTH = 32;

export function readSecret(
  raw: Partial<Record<VariableName, string>>,
  file: string,
  issues: ConfigIssue[],
): string | null {
  if (raw.VALHALLA_PSEUDONYM_SECRET !== undefined) {
    const secret = raw.VALHALLA_PSEUDONYM_SECRET.trim();
    if (secret.length < MIN_SECRET_LENGTH) {
      issues.push({
        setting: 'VALHALLA_PSEUDONYM_SECRET',
        value: '(secret)',
        problem: `too short: at least ${MIN_SECRET_LENGTH} characters`,
      });
    }
    return secret;
  }
  if (!existsSync(file)) {
    if (raw.VALHALLA_PSEUDONYM_SECRET_FILE !== undefined) {
      issues.push({ setting: 'VALHALLA_PSEUDONYM_SECRET_FILE', value: file, problem: 'no such file' });
    }
    return null;
  }
  try {
    const mode = statSync(file).mode;
    if ((mode & 0o077) !== 0) {
      issues.push({
        setting: 'VALHALLA_PSEUDONYM_SECRET_FILE',
        value: file,
        problem: `readable by group or others (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`,
      });
    }
    const secret = readFileSync(file, 'utf8').trim();
    if (secret.length < MIN_SECRET_LENGTH) {
      issues.push({
        setting: 'VALHALLA_PSEUDONYM_SECRET_FILE',
        value: file,
        problem: `the secret in it is too short: at least ${MIN_SECRET_LENGTH} characters`,
      });
    }
    return secret;
  } catch (cause) {
    issues.push({
      setting: 'VALHALLA_PSEUDONYM_SECRET_FILE',
      value: file,
      problem: `cannot read: ${(cause as Error).message}`,
    });
    return null;
  }
}
