/**
 * A Phase 4 installation that the real binary (`node bin/valhalla.js run`) starts on, cleared the way
 * operators clear one: 72 hours of Phase 3 behind it (written as the worker, the supervisor and the
 * engine write them), the evidence commands (`alerts test` to a local Slack receiver and SMTP server,
 * `dashboard check` against `valhalla serve`, `drill rollback`, `gates conformance`, `stability verify`),
 * five signers with their own Ed25519 keys, the attestations, the five sign-offs and the CEO's activation.
 * Then `gates verify` passes, and the ramp's clock is set a week back so every cycle runs at the
 * configured ceiling (stage 1 would wait for an operator to confirm each cycle).
 *
 * The Phase 3 history's leads are dated 15 days back: the first live cycle expires them, so the
 * benchmark's own leads are the only ones sent.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { SMTPServer } from 'smtp-server';
import { initialize, openApp } from '../src/app/index.js';
import { BIN } from '../src/app/run.js';
import { runCli } from '../src/cli/main.js';
import { ManualClock } from '../src/clock/index.js';
import { loadConfig } from '../src/config/index.js';
import { GATES } from '../src/gates/index.js';
import { writeGoLiveAt } from '../src/guard/index.js';
import type { SandboxPartner } from '../src/sandbox/index.js';
import { createApiToken } from '../src/server/index.js';
import { phase4Settings } from '../test/support/cli.js';
import { seedPhase3Run } from '../test/support/phase3-run.js';

const S = 1_000;
const MIN = 60 * S;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SIGNERS = [
  { role: 'ceo', name: 'Casey Chief' },
  { role: 'cfo', name: 'Fran Finance' },
  { role: 'general_counsel', name: 'Gale Counsel' },
  { role: 'risk_officer', name: 'Rory Risk' },
  { role: 'head_of_operations', name: 'Hollis Ops' },
] as const;

export interface Installation {
  cwd: string;
  /** The environment of every command on this installation (PATH included). */
  env: Record<string, string>;
  dbFile: string;
  /** Stops the alert receivers. Safe to call twice. */
  close(): Promise<void>;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `valhalla <args>` inside this process: the binary's code path, without a process start. */
export async function cli(
  args: string[],
  at: { cwd: string; env: Record<string, string> },
): Promise<CliResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const code = await runCli(args, { stdout, stderr, stdin: Readable.from([]), env: at.env, cwd: at.cwd });
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

async function mustPass(args: string[], at: { cwd: string; env: Record<string, string> }): Promise<void> {
  const result = await cli(args, at);
  if (result.code !== 0) {
    throw new Error(`valhalla ${args.join(' ')} exited ${result.code}:\n${result.stdout}${result.stderr}`);
  }
}

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
    await mustPass(['alerts', 'test'], at);
    await dashboardCheck(at, dashboardToken.token);
    await mustPass(['drill', 'rollback'], at);
    await mustPass(['gates', 'conformance'], at);
    await mustPass(['gates', 'conformance', '--partner', 'configured'], at);
    await mustPass(['stability', 'verify', '--hours', '72', '--record'], at);
    log(`  evidence (alerts, dashboard, rollback drill, conformance, stability) in ${seconds(started)}`);

    started = Date.now();
    await signEverything(at);
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

async function signEverything(at: { cwd: string; env: Record<string, string> }): Promise<void> {
  const key = (role: string) => join(at.cwd, `${role}.key`);
  const nameOf = (role: string) => SIGNERS.find((s) => s.role === role)?.name ?? role;
  for (const s of SIGNERS) {
    await mustPass(['keys', 'create', '--out', join(at.cwd, s.role)], at);
    await mustPass(
      ['signers', 'add', '--role', s.role, '--name', s.name, '--key', `${join(at.cwd, s.role)}.pub`],
      at,
    );
  }
  for (const item of GATES.flatMap((g) => g.items)) {
    if (item.check.kind !== 'attested') continue;
    const role = item.check.role;
    await mustPass(
      [
        'attest',
        '--item',
        item.id,
        '--role',
        role,
        '--name',
        nameOf(role),
        '--key',
        key(role),
        '--comments',
        'reviewed',
      ],
      at,
    );
  }
  for (const s of SIGNERS) {
    await mustPass(
      ['signoff', '--role', s.role, '--name', s.name, '--key', key(s.role), '--comments', 'approved'],
      at,
    );
  }
  await mustPass(['activate', '--name', nameOf('ceo'), '--key', key('ceo'), '--comments', 'go'], at);
}

/** `valhalla serve` (the real binary) on a free port, and `valhalla dashboard check` against it. */
async function dashboardCheck(
  at: { cwd: string; env: Record<string, string> },
  token: string,
): Promise<void> {
  const serve = spawn(process.execPath, [BIN, 'serve'], {
    cwd: at.cwd,
    env: { ...at.env, VALHALLA_SERVER_PORT: '0', VALHALLA_METRICS_PORT: 'off' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  serve.stdout.on('data', (c: Buffer) => {
    out += c;
  });
  serve.stderr.on('data', (c: Buffer) => {
    out += c;
  });
  const closed = new Promise((resolve) => serve.once('close', resolve));
  // Stopped below; killed if the benchmark itself ends first.
  const killServe = () => serve.kill('SIGKILL');
  process.once('exit', killServe);
  try {
    const urlIn = () => /dashboard: (http:\/\/[^\s/]+)\//.exec(out)?.[1];
    for (let i = 0; i < 1_200 && urlIn() === undefined; i++) {
      if (serve.exitCode !== null) break;
      await sleep(50);
    }
    const url = urlIn();
    if (url === undefined) throw new Error(`valhalla serve did not start:\n${out}`);
    const tokenFile = join(at.cwd, 'dashboard.token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    await mustPass(['dashboard', 'check', '--url', url, '--token-file', tokenFile], at);
  } finally {
    if (serve.exitCode === null && serve.signalCode === null) {
      serve.kill('SIGTERM');
      const guard = setTimeout(() => serve.kill('SIGKILL'), 30_000);
      await closed;
      clearTimeout(guard);
    }
    process.off('exit', killServe);
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
