/** Prometheus's `promtool` (Debian's `prometheus` package): checks and unit tests of the alert rules. */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * The promtool on PATH (or /usr/bin/promtool). Required when CI=true (.ci/run installs it); elsewhere
 * the tests that need it are skipped with a printed reason.
 */
export function findPromtool(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin'];
  for (const dir of dirs) {
    const candidate = join(dir, 'promtool');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  if (process.env.CI === 'true') {
    throw new Error(
      'CI=true but promtool is not installed (Debian: apt-get install --no-install-recommends prometheus)',
    );
  }
  console.warn(
    '[skip] alert rule tests skipped: promtool not found (Debian package `prometheus`); CI=true makes this a failure',
  );
  return null;
}

export interface PromtoolResult {
  code: number;
  /** Standard output and error together, as promtool prints its findings on either. */
  output: string;
}

/** Run `promtool <args>` (with `input` on stdin), killed after `timeoutMs`. */
export function promtool(
  path: string,
  args: string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<PromtoolResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      path,
      args,
      { timeout: options.timeoutMs ?? 60_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(error);
          return;
        }
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, output: `${stdout}${stderr}` });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}
