/**
 * Vitest's global setup: the test harness (test/harness), which the fault, e2e and supervisor suites
 * run as real processes, is built apart from the shipped product, into dist-test/
 * (tsconfig.test-build.json; `npm test` builds it first). It is built here too when it is missing, or
 * older than the product's build or than its own sources, so that a run of a few files after
 * `npm run build` spawns a harness built from the same sources as the binary.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HARNESS_SOURCES = join(REPO_ROOT, 'test', 'harness');
const HARNESS_BUILT = join(REPO_ROOT, 'dist-test', 'test', 'harness');

const modified = (path: string): number => (existsSync(path) ? statSync(path).mtimeMs : Number.NaN);

function harnessIsStale(): boolean {
  const scripts = readdirSync(HARNESS_SOURCES).filter((name) => name.endsWith('.ts'));
  const built = Math.min(
    ...scripts.map((name) => modified(join(HARNESS_BUILT, name.replace(/\.ts$/, '.js')))),
  );
  if (Number.isNaN(built)) return true;
  const inputs = [
    ...scripts.map((name) => join(HARNESS_SOURCES, name)),
    join(REPO_ROOT, 'test', 'support', 'world.ts'),
    // The product's build: the harness runs the same sources (src/), compiled again beside it.
    join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'),
  ];
  return inputs.some((path) => modified(path) > built);
}

export default function buildTestHarness(): void {
  if (!harnessIsStale()) return;
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.test-build.json'], {
    cwd: REPO_ROOT,
    stdio: 'inherit',
  });
}
