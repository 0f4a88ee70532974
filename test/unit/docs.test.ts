import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

describe('the documentation', () => {
  it('links only within the repository, and docs/policy.md names files and tests that exist', () => {
    const check = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'check-docs.mjs'), REPO_ROOT], {
      encoding: 'utf8',
    });
    expect(check.stdout).toBe('');
    expect(check.status).toBe(0);
  });
});

describe('the documentation check', () => {
  it("fails on a link out of the repository and on code that sends a reader to the team's notes", () => {
    // Spelled in pieces: this file is checked too.
    const shared = ['..', 'shared'].join('/');
    const design = ['DESIGN', 'md'].join('.');
    const dir = tempDir();
    mkdirSync(join(dir, 'docs'));
    mkdirSync(join(dir, 'src', 'engine'), { recursive: true });
    writeFileSync(join(dir, 'README.md'), `See [the policy](${shared}/spec/PHASE4_POLICY.md).\n`);
    writeFileSync(join(dir, 'docs', 'policy.md'), '# Policy\n\n## Where the names live\n');
    writeFileSync(
      join(dir, 'src', 'engine', 'cycle.ts'),
      `// The cycle (${design} §3.2).\nexport const x = 1;\n`,
    );
    const check = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'check-docs.mjs'), dir], {
      encoding: 'utf8',
    });
    expect(check.stdout).toContain(`README.md: link ${shared}/spec/PHASE4_POLICY.md leaves the repository`);
    expect(check.stdout).toContain('src/engine/cycle.ts:1: refers to notes outside the repository');
    expect(check.stdout).toContain('README.md:1: refers to notes outside the repository');
    expect(check.status).toBe(1);
  });
});
