/**
 * Going live the way operators and stakeholders do, through the CLI: the evidence commands, five
 * signers with their own Ed25519 keys, the attestations, the five sign-offs and the CEO's activation.
 * Each step must succeed; a failing one throws with what the command printed.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initialize } from '../../src/app/index.js';
import { BIN } from '../../src/app/run.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { GATES } from '../../src/gates/index.js';
import type { CliResult } from './cli.js';
import { seedPhase3Run } from './phase3-run.js';
import { spawnNode } from './processes.js';
import { HOUR, MINUTE, until, whileRunning } from './world.js';

export const SIGNERS = [
  { role: 'ceo', name: 'Casey Chief' },
  { role: 'cfo', name: 'Fran Finance' },
  { role: 'general_counsel', name: 'Gale Counsel' },
  { role: 'risk_officer', name: 'Rory Risk' },
  { role: 'head_of_operations', name: 'Hollis Ops' },
] as const;
export const nameOf = (role: string) => SIGNERS.find((s) => s.role === role)!.name;
/** The items a stakeholder attests, with the role that signs each. */
export const ATTESTED = GATES.flatMap((g) => g.items).flatMap((i) =>
  i.check.kind === 'attested' ? [{ id: i.id, role: i.check.role as string }] : [],
);

/**
 * What a Phase 4 installation must have on before it may start (the release manifest refuses it
 * off): both alert channels, metrics on any free port, a log level that keeps warnings, one-second
 * cycles for the tests, and the dashboard's token entry.
 */
export function monitoringSettings(
  slack: { webhookUrl: string },
  smtp: { url: string },
  dashboardTokenEntry: string,
): Record<string, string> {
  return {
    VALHALLA_SLACK_WEBHOOK_URL: slack.webhookUrl,
    VALHALLA_SMTP_URL: smtp.url,
    VALHALLA_ALERT_EMAIL_TO: 'ops@example.com',
    VALHALLA_METRICS_PORT: '0',
    VALHALLA_LOG_LEVEL: 'warn',
    VALHALLA_CYCLE_INTERVAL_S: '1',
    VALHALLA_API_TOKENS: dashboardTokenEntry,
  };
}

/**
 * The installation in `cwd`, initialised 73 hours ago (a virtual clock), then 72 hours of Phase 3 on
 * it ending now: gate 9 counts only what an installation wrote after its initialisation.
 */
export async function initializeWithPhase3History(cwd: string, env: Record<string, string>): Promise<void> {
  const clock = new ManualClock(Date.now() - 73 * HOUR);
  const { app } = await initialize(loadConfig({ cwd, env }), { clock });
  try {
    await seedPhase3Run(app, clock, {
      start: Date.now() - 72 * HOUR - 10 * MINUTE,
      end: Date.now() + 5 * MINUTE,
    });
  } finally {
    await app.close();
  }
}

type Cli = (args: string[], extra?: Record<string, string>) => Promise<CliResult>;

function must(result: CliResult, what: string): CliResult {
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}:\n${result.stderr}${result.stdout}`);
  return result;
}

/**
 * `valhalla serve` (the real binary) on a free port for as long as `work` runs, given the dashboard's
 * URL; then stopped with SIGTERM.
 */
export async function withServe<T>(
  cwd: string,
  env: Record<string, string>,
  work: (url: string) => Promise<T>,
): Promise<T> {
  const children = new Set<ChildProcess>();
  const serve = spawnNode(BIN, ['serve'], { cwd, env, children, guardMs: 120_000 });
  try {
    const url = await until(() => /dashboard: (http:\/\/[^\s/]+)\//.exec(serve.out())?.[1], {
      what: 'valhalla serve to start',
      timeoutMs: 30_000,
      ...whileRunning(serve),
    });
    return await work(url);
  } finally {
    serve.child.kill('SIGTERM');
    await serve.exited;
  }
}

/**
 * The evidence gates 2, 3, 5, 7 and 9 verify: a test alert on both channels, a dashboard check of
 * `valhalla serve` with a viewer token, a rollback drill, the sandbox conformance run, the run
 * against the configured partner, and 72 hours of stability (already in the database).
 */
export async function recordEvidence(
  cli: Cli,
  cwd: string,
  env: Record<string, string>,
  dashboardToken: string,
): Promise<void> {
  must(await cli(['alerts', 'test']), 'alerts test');
  const tokenFile = join(cwd, 'dashboard.token');
  writeFileSync(tokenFile, `${dashboardToken}\n`, { mode: 0o600 });
  await withServe(cwd, env, async (url) =>
    must(await cli(['dashboard', 'check', '--url', url, '--token-file', tokenFile]), 'dashboard check'),
  );
  must(await cli(['drill', 'rollback']), 'drill rollback');
  must(await cli(['gates', 'conformance']), 'gates conformance');
  must(
    await cli(['gates', 'conformance', '--partner', 'configured']),
    'gates conformance --partner configured',
  );
  must(await cli(['stability', 'verify', '--hours', '72', '--record']), 'stability verify');
}

/** Keys (`<cwd>/<role>.key`), the five signers, every attestation, the five sign-offs, the CEO's activation. */
export async function signEverything(cli: Cli, cwd: string): Promise<void> {
  for (const s of SIGNERS) {
    must(await cli(['keys', 'create', '--out', join(cwd, s.role)]), `keys create ${s.role}`);
    must(
      await cli(['signers', 'add', '--role', s.role, '--name', s.name, '--key', join(cwd, `${s.role}.pub`)]),
      `signers add ${s.role}`,
    );
  }
  for (const item of ATTESTED) {
    must(
      await cli([
        'attest',
        '--item',
        item.id,
        '--role',
        item.role,
        '--name',
        nameOf(item.role),
        '--key',
        join(cwd, `${item.role}.key`),
        '--comments',
        'reviewed',
      ]),
      `attest ${item.id}`,
    );
  }
  for (const s of SIGNERS) {
    must(
      await cli(['signoff', '--role', s.role, '--name', s.name, '--key', join(cwd, `${s.role}.key`)]),
      `signoff ${s.role}`,
    );
  }
  must(await cli(['activate', '--name', nameOf('ceo'), '--key', join(cwd, 'ceo.key')]), 'activate');
}
