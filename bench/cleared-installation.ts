import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { initialize, openApp } from '../src/app/index.js';
import { ManualClock } from '../src/clock/index.js';
import { loadConfig } from '../src/config/index.js';
import { writeGoLiveAt } from '../src/guard/index.js';
import type { SandboxPartner } from '../src/sandbox/index.js';
import { createApiToken } from '../src/server/index.js';
import { type CliResult, phase4Settings, runInProcess } from '../test/support/cli.js';
import { recordEvidence, signEverything } from '../test/support/go-live.js';
import { seedPhase3Run } from '../test/support/phase3-run.js';

const S = 1_000;
const MIN = 60 * S;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

export interface Installation {
  cwd: string;
  /** The environment of every command on this installation (PATH included). */
  env: Record<string, string>;
  dbFile: string;
  /** Stops the alert receivers. Safe to call twice. */
  close(): Promise<void>;
}

export type { CliResult };

/** `valhalla <args>` inside this process: the binary's code path, without a process start. */
export const cli = (args: string[], at: { cwd: string; env: Record<string, string> }): Promise<CliResult> =>
  runInProcess(args, at);

/**
 * Initialise a Phase 4 installation in `cwd` sending to `partner`, with `settings` (cycle interval,
 * limits…) for every later run, and clear its gates. Prints one line per step to `log`.
 */
export async function clearedInstallation(
  cwd: string,
  partner: SandboxPartner,
  settings: Record<string, string>,
  log: (line: string) => void,
): Promise<Installation> {
  const slack = await startSlackReceiver();
  const mail = await startMailServer();
  const close = async () => {
    await slack.close();
    await mail.close();
  };
  try {
    const data = join(cwd, 'data');
    const dashboardToken = createApiToken('bench-check', 'viewer');
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      VALHALLA_DATA_DIR: data,
      VALHALLA_PSEUDONYM_SECRET: 'bench-secret-0123456789abcdef0123456789abcdef',
      VALHALLA_LOG_FILE: join(data, 'valhalla.log'),
      VALHALLA_OPERATOR: 'bench-operator',
      ...phase4Settings(partner),
      VALHALLA_SLACK_WEBHOOK_URL: slack.webhookUrl,
      VALHALLA_SMTP_URL: mail.url,
      VALHALLA_ALERT_EMAIL_TO: 'ops@example.com',
      VALHALLA_API_TOKENS: dashboardToken.entry,
      ...settings,
    };
    const at = { cwd, env };
    const dbFile = join(data, 'valhalla.db');

    // Initialised 73 hours ago (a virtual clock), then 72 hours of Phase 3 ending now: gate 9 counts
    // only what an installation wrote after its initialisation.
    let started = Date.now();
    const clock = new ManualClock(Date.now() - 73 * HOUR);
    const { app } = await initialize(loadConfig({ cwd, env }), { clock });
    try {
      // The leads its dry runs recorded are dated 15 days back: expired by the first live cycle.
      await seedPhase3Run(
        app,
        clock,
        { start: Date.now() - 72 * HOUR - 10 * MIN, end: Date.now() + 5 * MIN },
        { leadsSourceTs: Date.now() - 15 * DAY },
      );
    } finally {
      await app.close();
    }
    log(`  Phase 3 history (72 h) written in ${seconds(started)}`);

    started = Date.now();
    await recordEvidence((args) => cli(args, at), cwd, env, dashboardToken.token);
    log(`  evidence (alerts, dashboard, rollback drill, conformance, stability) in ${seconds(started)}`);

    started = Date.now();
    await signEverything((args) => cli(args, at), cwd);
    const verify = await cli(['gates', 'verify'], at);
    if (verify.code !== 0) throw new Error(`gates verify exited ${verify.code}:\n${verify.stdout}`);
    log(`  signers, attestations, sign-offs and the CEO's activation in ${seconds(started)}: gates verify 0`);

    // Past ramp stage 1 (one lead per cycle, each confirmed by an operator) to the configured ceiling.
    const live = await openApp({ config: loadConfig({ cwd, env }) });
    try {
      await writeGoLiveAt(live.store.db, Date.now() - 7 * DAY);
    } finally {
      await live.close();
    }
    return { cwd, env, dbFile, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** An HTTP receiver on 127.0.0.1 that answers like a Slack incoming webhook. */
async function startSlackReceiver(): Promise<{ webhookUrl: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    webhookUrl: `http://127.0.0.1:${port}/services/T0/B0/bench`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closing;
    },
  };
}

/** A real SMTP server on 127.0.0.1 (any port) that accepts and discards every message. */
async function startMailServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    closeTimeout: 500,
    onData(stream, _session, callback) {
      stream.resume();
      stream.on('end', () => callback());
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `smtp://127.0.0.1:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => server.close(() => resolve()));
      return closing;
    },
  };
}

const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`;
