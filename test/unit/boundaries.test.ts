/**
 * The layering rules of `npm run lint:deps` (.dependency-cruiser.cjs, part of `npm run lint`): the
 * product breaks none of them, and each one fails on a module that breaks it (a fixture tree).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const DEPCRUISE = join(REPO_ROOT, 'node_modules', '.bin', 'depcruise');
const CONFIG = join(REPO_ROOT, '.dependency-cruiser.cjs');

function cruise(cwd: string) {
  const run = spawnSync(DEPCRUISE, ['--config', CONFIG, 'src'], { cwd, encoding: 'utf8', timeout: 120_000 });
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
}

function tree(files: Record<string, string>): string {
  const dir = tempDir();
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

const TSCONFIG = JSON.stringify({
  compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true },
  include: ['src'],
});

describe('the layering rules', () => {
  it('hold for the product: no cycle, SQL only in the store, other folders only through their index, the app used only from the top', () => {
    const { status, out } = cruise(REPO_ROOT);
    expect(out).toContain('no dependency violations found');
    expect(status).toBe(0);
  }, 120_000);

  it('each rule fails on a module that breaks it, naming the rule and the import', () => {
    const dir = tree({
      'tsconfig.json': TSCONFIG,
      'src/store/index.ts': "export { sql } from 'kysely';\n",
      'src/engine/index.ts': "export * from './cycle.js';\n",
      'src/engine/cycle.ts':
        "import { sql } from 'kysely';\nimport { plan } from './plan.js';\nexport const cycle = () => [plan, sql];\n",
      'src/engine/plan.ts': "import { cycle } from './cycle.js';\nexport const plan = () => cycle;\n",
      'src/app/index.ts':
        "import { plan } from '../engine/plan.js';\nimport { cycle } from '../engine/index.js';\nexport const app = [plan, cycle];\n",
      'src/privacy/index.ts': "import { app } from '../app/index.js';\nexport const erase = () => app;\n",
      'src/cli/main.ts': "import { app } from '../app/index.js';\nexport const main = () => app;\n",
    });
    const { status, out } = cruise(dir);
    expect(status).not.toBe(0);
    expect(out).toMatch(/error sql-only-in-store: src\/engine\/cycle\.ts → \S*node_modules\/kysely\//);
    expect(out).toContain('error no-deep-cross-folder-import: src/app/index.ts → src/engine/plan.ts');
    expect(out).toMatch(/error no-cycle: src\/engine\/(cycle|plan)\.ts/);
    expect(out).toContain('error app-only-from-the-top: src/privacy/index.ts → src/app/index.ts');
    expect(out).not.toContain('src/cli/main.ts → src/app/index.ts');
    // Through the folder's index, and the query builder inside the store: allowed.
    expect(out).not.toContain('src/app/index.ts → src/engine/index.ts');
    expect(out).not.toContain('src/store/index.ts →');
  }, 120_000);
});
