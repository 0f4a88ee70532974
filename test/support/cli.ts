import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../src/cli/main.js';
import { DEFAULT_POLICY_FILE } from '../../src/config/index.js';
import { HOUR } from './world.js';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(REPO_ROOT, 'bin', 'valhalla.js');

/**
 * A script of the test harness (test/harness: Phase 4 workers with the gates given, a stand-in worker),
 * run as a real process. Not part of the product: it is built apart from dist/, into dist-test/
 * (tsconfig.test-build.json; `npm test` builds it, and so does the suites' global setup when stale).
 */
export function harnessScript(name: 'fault-worker' | 'live-run' | 'live-worker' | 'sup-worker'): string {
  return join(REPO_ROOT, 'dist-test', 'test', 'harness', `${name}.js`);
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  env: Record<string, string | undefined>;
  cwd: string;
  stdin?: string;
}

/** Run `valhalla <args>` inside this process (fast; the same code path as the binary). */
export async function runInProcess(args: string[], options: CliRunOptions): Promise<CliResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const code = await runCli(args, {
    stdout,
    stderr,
    stdin: Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]),
    env: options.env,
    cwd: options.cwd,
  });
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/** Run the built `bin/valhalla.js` as a child process (requires `npm run build`, which `npm test` does first). */
export function runBinary(
  args: string[],
  options: CliRunOptions & { timeoutMs?: number },
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd,
      env: { PATH: process.env.PATH, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.end(options.stdin ?? '');
  });
}

/** An environment for a test: its own data folder, a fixed secret, logs to a file it can read. */
export function testEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    VALHALLA_DATA_DIR: dataDir,
    VALHALLA_PSEUDONYM_SECRET: 'test-secret-0123456789abcdef0123456789abcdef',
    VALHALLA_LOG_FILE: join(dataDir, 'valhalla.log'),
    VALHALLA_OPERATOR: 'test-operator',
    // Any free port: tests run side by side, and `run` serves the dashboard.
    VALHALLA_SERVER_PORT: '0',
    ...extra,
  };
}

/** The partner settings a Phase 4 test environment needs (a sandbox partner's, usually). */
export interface PartnerEndpoint {
  url: string;
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  caFile: string | null;
}

/** A partner for a Phase 4 configuration that is never called (the test sends nothing, or brings its own). */
export const UNCALLED_PARTNER: PartnerEndpoint = {
  url: 'https://partner.example.test',
  tokenUrl: 'https://partner.example.test/oauth/token',
  clientId: 'valhalla-test',
  clientSecret: 'valhalla-test-secret-0123456789',
  caFile: null,
};

/** The settings that make Phase 4 sending to `partner` (and `extra`), without a data folder's. */
export function phase4Settings(
  partner: PartnerEndpoint,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    VALHALLA_PHASE: '4',
    VALHALLA_DRY_RUN: '0',
    VALHALLA_DISABLE_OUTBOUND: '0',
    VALHALLA_REAL_DATA_INGEST: '1',
    VALHALLA_PARTNER_URL: partner.url,
    VALHALLA_PARTNER_TOKEN_URL: partner.tokenUrl,
    VALHALLA_PARTNER_CLIENT_ID: partner.clientId,
    VALHALLA_PARTNER_CLIENT_SECRET: partner.clientSecret,
    ...(partner.caFile ? { VALHALLA_PARTNER_CA_FILE: partner.caFile } : {}),
    ...extra,
  };
}

/** A Phase 4 installation sending to `partner`, with its own data folder. */
export function phase4Env(
  dataDir: string,
  partner: PartnerEndpoint,
  extra: Record<string, string> = {},
): Record<string, string> {
  return testEnv(dataDir, phase4Settings(partner, extra));
}

/** A Phase 3 installation (dry runs, synthetic data) pointed at `partner`, with its own data folder. */
export function phase3Env(
  dataDir: string,
  partner: PartnerEndpoint,
  extra: Record<string, string> = {},
): Record<string, string> {
  return testEnv(dataDir, {
    VALHALLA_PHASE: '3',
    VALHALLA_REAL_DATA_INGEST: '0',
    VALHALLA_PARTNER_URL: partner.url,
    VALHALLA_PARTNER_TOKEN_URL: partner.tokenUrl,
    VALHALLA_PARTNER_CLIENT_ID: partner.clientId,
    VALHALLA_PARTNER_CLIENT_SECRET: partner.clientSecret,
    ...extra,
  });
}

/** The shipped policy with `changes` (a shorter heartbeat, a lower cap…), written to `dir`/policy.json. */
export function policyFileWith(dir: string, changes: Record<string, unknown>): string {
  const policy = { ...JSON.parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8')), ...changes };
  const file = join(dir, 'policy.json');
  writeFileSync(file, JSON.stringify(policy));
  return file;
}

/**
 * A CSV of `count` leads an hour old: `name i`, `email.i@example.org`, scores from `top` down in
 * `spread` steps (all eligible), each worth `value`.
 */
export function recentLeadsCsv(
  path: string,
  count: number,
  lead: { name: string; email: string; top: number; spread: number; value: number },
): void {
  const at = new Date(Date.now() - HOUR).toISOString();
  const rows = ['name,email,score,source_timestamp,value'];
  for (let i = 0; i < count; i++) {
    rows.push(
      `${lead.name} ${i},${lead.email}.${i}@example.org,${lead.top - (i % lead.spread)},${at},${lead.value}`,
    );
  }
  writeFileSync(path, `${rows.join('\n')}\n`);
}
