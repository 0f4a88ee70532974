import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';

describe('the documentation', () => {
  it('links only within the repository, and docs/policy.md names files and tests that exist', () => {
    const check = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'check-docs.mjs'), REPO_ROOT], {
      encoding: 'utf8',
    });
    expect(check.stdout).toBe('');
    expect(check.status).toBe(0);
  });
});
