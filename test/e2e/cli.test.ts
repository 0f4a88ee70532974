import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { Command } from 'commander';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { DEFAULT_POLICY_FILE, loadConfig } from '../../src/config/index.js';
import {
  BIN,
  type CliResult,
  phase4Env,
  runBinary,
  runInProcess,
  testEnv,
  UNCALLED_PARTNER,
} from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const NOW = new Date().toISOString();

/** A fresh installation: its own folder, initialised. */
async function installed(
  extra: Record<string, string> = {},
): Promise<{ cwd: string; env: Record<string, string> }> {
  const cwd = tempDir();
  const env = testEnv(join(cwd, 'data'), extra);
  const init = await runInProcess(['init'], { cwd, env });
  expect(init.code, init.stderr).toBe(0);
  return { cwd, env };
}

/** Every command path of the program: ['init'], ['leads', 'list'], ... */
async function commandPaths(): Promise<string[][]> {
  const io = {
    stdout: new PassThrough(),
    stderr: new PassThrough(),
    stdin: Readable.from([]),
    env: {},
    cwd: tempDir(),
  };
  const paths: string[][] = [];
  const walk = (command: Command, path: string[]) => {
    for (const sub of command.commands) {
      paths.push([...path, sub.name()]);
      walk(sub, [...path, sub.name()]);
    }
  };
  walk(await buildProgram(io), []);
  return paths;
}

function json<T = Record<string, unknown>>(result: CliResult): T {
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as T;
}

describe('exit codes', () => {
  let cwd: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    ({ cwd, env } = await installed());
  });

  it('0 when a command succeeds', async () => {
    const result = await runInProcess(['status'], { cwd, env });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Phase 3 (DRY-RUN)');
    // Phase 3 sends nothing, whatever the mode says: status never reads "live" there.
    expect(result.stdout).toContain('Mode: DRY-RUN (Phase 3: nothing is sent)');
    expect(result.stdout).not.toMatch(/Mode: live/);
    expect(result.stderr).toBe('');
  });

  it('0 when the reader is gone (`valhalla … | head -1`): no stack trace', async () => {
    for (const args of [['--help'], ['status']]) {
      const child = spawn(process.execPath, [BIN, ...args], {
        cwd,
        env: { PATH: process.env.PATH ?? '', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      // The reader goes before the command writes its first line: every write meets a closed pipe.
      child.stdout.destroy();
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk;
      });
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(stderr, args.join(' ')).not.toMatch(/EPIPE|\n\s+at /);
      expect(code, `${args.join(' ')}: ${stderr}`).toBe(0);
    }
  });

  it('1 when ingesting a file that does not exist, naming it', async () => {
    const result = await runInProcess(['ingest', 'missing.csv'], { cwd, env });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/missing\.csv: no such file/);
    expect(result.stdout).toBe('');
  });

  it('1 when the store is used before `valhalla init` created it, naming where it looked; nothing is created', async () => {
    const fresh = tempDir();
    const { VALHALLA_PSEUDONYM_SECRET: _, ...noSecret } = testEnv(join(fresh, 'data'));
    const result = await runInProcess(['leads', 'list'], { cwd: fresh, env: noSecret });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no Valhalla installation at ${join(fresh, 'data', 'valhalla.db')}`);
    expect(result.stderr).toContain('`valhalla init` creates a new installation');
    expect(existsSync(join(fresh, 'data'))).toBe(false);
  });

  it.each([
    [['bogus'], "unknown command 'bogus'"],
    [['ingest'], "missing required argument 'file'"],
    [['leads', 'generate'], "required option '--count <n>' not specified"],
    [['leads', 'list', '--limit', '0'], 'must be from 1 to 1000'],
    [['leads', 'list', '--limit', '1001'], 'must be from 1 to 1000'],
    [['leads', 'list', '--limit', 'abc'], 'not a whole number: abc'],
    [['leads', 'list', '--limit', '2.5'], 'not a whole number: 2.5'],
    [['leads', 'list', '--before-id', '-3'], 'not a whole number: -3'],
    [['leads', 'list', '--before-id', '0'], 'must be from 1 to'],
    [['leads', 'list', '--state', 'sent'], 'Allowed choices are'],
    [['leads', 'list', 'extra'], 'too many arguments'],
    [['leads', 'generate', '--count', '5', '--now', 'yesterday'], 'not an ISO 8601 date-time'],
    [['status', '--bogus'], "unknown option '--bogus'"],
    [['ingest', 'x.csv', '--format', 'xml'], 'Allowed choices are csv, jsonl'],
    [[], 'Usage: valhalla'],
    [['leads'], 'Usage: valhalla leads'],
    [['audit'], 'Usage: valhalla audit'],
  ])('2 (usage) for %j', async (args, message) => {
    const result = await runInProcess(args, { cwd, env });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
  });

  it('3 (refused by policy) when the configuration is over a hard maximum, naming variable, value and limit', async () => {
    const result = await runInProcess(['status'], {
      cwd,
      env: { ...env, VALHALLA_MAX_LEADS_PER_CYCLE: '101' },
    });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('VALHALLA_MAX_LEADS_PER_CYCLE="101"');
    expect(result.stderr).toContain('hard maximum 100');
    expect(result.stdout).toBe('');
  });

  it.each([
    [{ VALHALLA_MAX_ACTIONS_PER_CYCLE: '11' }, 'hard maximum 10'],
    [{ VALHALLA_RATE_LIMIT: '5.5' }, 'hard maximum 5'],
    [{ VALHALLA_PHASE: '4' }, 'Phase 4 requires VALHALLA_DRY_RUN=0'],
    [{ VALHALLA_PHASE: '5' }, 'must be 3 (DRY-RUN) or 4 (LIVE)'],
    [{ VALHALLA_MAX_LEADS_PER_CYCEL: '10' }, 'unknown variable'],
  ])('3 for %j', async (extra, message) => {
    for (const args of [['status'], ['config', 'show'], ['leads', 'list'], ['init']]) {
      const result = await runInProcess(args, { cwd, env: { ...env, ...extra } });
      expect(result.code, args.join(' ')).toBe(3);
      expect(result.stderr).toContain(message);
    }
  });

  it('3 for a policy file above a hard maximum', async () => {
    const policy = JSON.parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8'));
    policy.leadsPerCycle = 101;
    writeFileSync(join(cwd, 'policy-101.json'), JSON.stringify(policy));
    const result = await runInProcess(['status'], {
      cwd,
      env: { ...env, VALHALLA_POLICY_FILE: 'policy-101.json' },
    });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('policy.leadsPerCycle="101"');
  });

  it('the binary exits with the same codes (0, 1, 2, 3)', async () => {
    const [ok, failure, usage, refused] = await Promise.all([
      runBinary(['status', '--json'], { cwd, env }),
      runBinary(['ingest', 'missing.csv'], { cwd, env }),
      runBinary(['bogus'], { cwd, env }),
      runBinary(['status'], { cwd, env: { ...env, VALHALLA_MAX_LEADS_PER_CYCLE: '101' } }),
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).phase).toBe(3);
    expect(failure.code).toBe(1);
    expect(failure.stderr).toContain('no such file');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("unknown command 'bogus'");
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('VALHALLA_MAX_LEADS_PER_CYCLE="101"');
  });
});

const paths = await commandPaths();

describe('--help', () => {
  it('knows every command', () => {
    expect(paths.map((p) => p.join(' '))).toEqual(
      expect.arrayContaining([
        'init',
        'config',
        'config show',
        'ingest',
        'leads',
        'leads generate',
        'leads list',
        'status',
        'audit',
        'audit verify',
        'audit export',
      ]),
    );
  });

  it.each([[[]], ...paths.map((p) => [p])])(
    'valhalla %j --help exits 0 and prints its usage',
    async (path) => {
      // Even with a configuration that would be refused: help needs no configuration.
      const cwd = tempDir();
      const result = await runInProcess([...path, '--help'], {
        cwd,
        env: { VALHALLA_MAX_LEADS_PER_CYCLE: '101' },
      });
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`Usage: ${['valhalla', ...path].join(' ')} [options]`);
      expect(result.stdout).toContain('-h, --help');
      expect(result.stderr).toBe('');
    },
  );

  it('`valhalla help <command>` exits 0 too', async () => {
    const result = await runInProcess(['help', 'leads'], { cwd: tempDir(), env: {} });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Usage: valhalla leads');
  });

  it('the top-level help lists the exit codes', async () => {
    const result = await runInProcess(['--help'], { cwd: tempDir(), env: {} });
    expect(result.stdout).toContain('Exit codes: 0 ok, 1 failure, 2 usage, 3 refused by policy');
  });
});

describe('--json and leads list', () => {
  let cwd: string;
  let env: Record<string, string>;
  let ingested: {
    read: number;
    accepted: number;
    duplicate: number;
    rejected: number;
    states: Record<string, number>;
  };

  beforeAll(async () => {
    ({ cwd, env } = await installed());
    const generated = await runInProcess(
      ['leads', 'generate', '--count', '150', '--seed', '5', '--now', NOW, '--out', 'in/leads.csv'],
      { cwd, env },
    );
    expect(generated.code, generated.stderr).toBe(0);
    ingested = json(await runInProcess(['ingest', 'in/leads.csv', '--json'], { cwd, env }));
  });

  it('prints parseable JSON from every command that offers --json', async () => {
    expect(ingested).toMatchObject({ read: 150, format: 'csv', source: 'leads.csv' });
    expect(ingested.accepted + ingested.duplicate + ingested.rejected).toBe(150);
    const status = json<{ phase: number; leads: Record<string, number>; auditEntries: number }>(
      await runInProcess(['status', '--json'], { cwd, env }),
    );
    expect(status.phase).toBe(3);
    expect(status.leads.total).toBe(ingested.accepted);
    expect(status.auditEntries).toBeGreaterThan(2);
    const verify = json<{ ok: boolean; entries: number }>(
      await runInProcess(['audit', 'verify', '--json'], { cwd, env }),
    );
    expect(verify).toMatchObject({ ok: true, entries: status.auditEntries });
    const shown = json<{ policyHash: string }>(
      await runInProcess(['config', 'show', '--json'], { cwd, env }),
    );
    expect(shown.policyHash).toMatch(/^[0-9a-f]{64}$/);
    const init = json<{ createdSecret: boolean }>(await runInProcess(['init', '--json'], { cwd, env }));
    expect(init.createdSecret).toBe(false);
    const list = json<{ leads: unknown[]; nextBeforeId: number | null }>(
      await runInProcess(['leads', 'list', '--json'], { cwd, env }),
    );
    expect(list.leads).toHaveLength(50);
  });

  it('pages with --before-id: newest first, no overlap, no gap', async () => {
    const all = json<{ leads: { id: number }[]; nextBeforeId: number | null }>(
      await runInProcess(['leads', 'list', '--limit', '1000', '--json'], { cwd, env }),
    );
    expect(all.leads).toHaveLength(ingested.accepted);
    expect(all.nextBeforeId).toBeNull();
    const allIds = all.leads.map((l) => l.id);

    const seen: number[] = [];
    let beforeId: number | null = null;
    let pages = 0;
    do {
      const args: string[] = [
        'leads',
        'list',
        '--limit',
        '7',
        '--json',
        ...(beforeId === null ? [] : ['--before-id', String(beforeId)]),
      ];
      const page: { leads: { id: number }[]; nextBeforeId: number | null } = json<{
        leads: { id: number }[];
        nextBeforeId: number | null;
      }>(await runInProcess(args, { cwd, env }));
      expect(page.leads.length).toBeLessThanOrEqual(7);
      if (page.nextBeforeId !== null) expect(page.nextBeforeId).toBe(page.leads.at(-1)?.id);
      seen.push(...page.leads.map((l) => l.id));
      beforeId = page.nextBeforeId;
      pages++;
    } while (beforeId !== null && pages < 100);
    expect(pages).toBe(Math.ceil((ingested.accepted + 1) / 7));
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(allIds);
    expect(seen).toEqual([...seen].sort((a, b) => b - a));
  });

  it('tells the next page in text output', async () => {
    const result = await runInProcess(['leads', 'list', '--limit', '5'], { cwd, env });
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    // No lead keeps attributes here: no attributes column.
    expect(lines[0]).toMatch(/^ID\s+PSEUDONYM\s+NAME\s+EMAIL\s+PHONE\s+SCORE\s+STATE\s+SOURCE TIME$/);
    expect(lines).toHaveLength(7);
    const lastId = Number(lines[5]!.split(/\s+/)[0]);
    expect(lines[6]).toBe(`next page: --before-id ${lastId}`);
    const next = await runInProcess(['leads', 'list', '--limit', '5', '--before-id', String(lastId)], {
      cwd,
      env,
    });
    expect(Number(next.stdout.split('\n')[1]!.split(/\s+/)[0])).toBe(lastId - 1);
  });

  it('filters --state, and pages within the filter', async () => {
    const states = Object.entries(ingested.states).filter(([, n]) => n > 0);
    expect(states.length).toBeGreaterThanOrEqual(2);
    for (const [state, count] of states) {
      const list = json<{ leads: { state: string }[] }>(
        await runInProcess(['leads', 'list', '--state', state, '--limit', '1000', '--json'], { cwd, env }),
      );
      expect(list.leads, state).toHaveLength(count);
      expect(new Set(list.leads.map((l) => l.state))).toEqual(new Set([state]));
    }
    const first = json<{ leads: { id: number; state: string }[]; nextBeforeId: number }>(
      await runInProcess(['leads', 'list', '--state', 'pending', '--limit', '3', '--json'], { cwd, env }),
    );
    const second = json<{ leads: { id: number; state: string }[] }>(
      await runInProcess(
        [
          'leads',
          'list',
          '--state',
          'pending',
          '--limit',
          '3',
          '--before-id',
          String(first.nextBeforeId),
          '--json',
        ],
        { cwd, env },
      ),
    );
    expect(second.leads.every((l) => l.state === 'pending' && l.id < first.nextBeforeId)).toBe(true);
    expect(second.leads).toHaveLength(3);
    const empty = await runInProcess(['leads', 'list', '--state', 'exported'], { cwd, env });
    expect(empty.stdout).toBe('no leads\n');
  });
});

describe('config show', () => {
  it('prints the policy hash and masks the secret and a database password', async () => {
    const cwd = tempDir();
    const env = testEnv(join(cwd, 'data'), {
      VALHALLA_DATABASE_URL: 'postgres://valhalla:Db-Pa55word@db.example:5432/valhalla',
    });
    const expected = loadConfig({ env, cwd }).policyHash;
    const result = await runInProcess(['config', 'show'], { cwd, env });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Policy hash: ${expected}`);
    expect(result.stdout).toMatch(/VALHALLA_PSEUDONYM_SECRET\s+\*{8} \(set\)\s+environment/);
    expect(result.stdout).not.toContain(env.VALHALLA_PSEUDONYM_SECRET);
    expect(result.stdout).toContain('postgres://valhalla:***@db.example:5432/valhalla');
    expect(result.stdout).not.toContain('Db-Pa55word');
    const asJson = await runInProcess(['config', 'show', '--json'], { cwd, env });
    expect(JSON.parse(asJson.stdout).policyHash).toBe(expected);
    expect(asJson.stdout).not.toContain(env.VALHALLA_PSEUDONYM_SECRET);
    expect(asJson.stdout).not.toContain('Db-Pa55word');
  });
});

describe('the release manifest', () => {
  it('config show and gates manifest print the same manifest and hash; a signer elsewhere signs over the written file; the installation refuses it once its partner moved', async () => {
    const cwd = tempDir();
    const env = phase4Env(join(cwd, 'data'), UNCALLED_PARTNER, { VALHALLA_RATE_LIMIT: '4' });
    expect((await runInProcess(['init'], { cwd, env })).code).toBe(0);
    const manifest = await runInProcess(['gates', 'manifest', '--json'], { cwd, env });
    expect(manifest.code, manifest.stderr).toBe(0);
    const status = JSON.parse(manifest.stdout) as {
      hash: string;
      document: { installationId: string; limits: { rateLimitPerSecond: number }; partner: { url: string } };
      problems: string[];
    };
    expect(status.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(status.document.limits.rateLimitPerSecond).toBe(4);
    expect(status.document.partner.url).toBe(`${UNCALLED_PARTNER.url}/`);
    // Monitoring is not fully on here (no Slack, no e-mail): named.
    expect(status.problems).toContain('VALHALLA_SLACK_WEBHOOK_URL is not set: Phase 4 needs Slack alerts');
    const shown = await runInProcess(['config', 'show'], { cwd, env });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(
      `Release manifest: ${status.hash} (installation ${status.document.installationId}), what every signed document approves:`,
    );
    expect(
      JSON.parse((await runInProcess(['config', 'show', '--json'], { cwd, env })).stdout).releaseManifest,
    ).toEqual({
      hash: status.hash,
      document: status.document,
    });
    // The installation id is in the chain, from init.
    const chain = await runInProcess(['audit', 'export', '--out', 'audit.jsonl'], { cwd, env });
    expect(chain.code, chain.stderr).toBe(0);
    const initialized = readFileSync(join(cwd, 'audit.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { action: string; details: string | Record<string, unknown> })
      .find((e) => e.action === 'system.initialized')!;
    const details =
      typeof initialized.details === 'string' ? JSON.parse(initialized.details) : initialized.details;
    expect(details.installationId).toBe(status.document.installationId);

    // The CFO, on a machine with no installation, signs over the manifest file the operator sent.
    expect((await runInProcess(['gates', 'manifest', '--out', 'manifest.json'], { cwd, env })).code).toBe(0);
    expect(statSync(join(cwd, 'manifest.json')).mode & 0o777).toBe(0o600);
    const elsewhere = tempDir();
    const bare = { PATH: process.env.PATH ?? '' };
    expect((await runInProcess(['keys', 'create', '--out', 'cfo'], { cwd: elsewhere, env: bare })).code).toBe(
      0,
    );
    const signed = await runInProcess(
      [
        'signoff',
        '--role',
        'cfo',
        '--name',
        'Frida Finance',
        '--key',
        'cfo.key',
        '--manifest',
        join(cwd, 'manifest.json'),
        '--out',
        'cfo-signoff.json',
      ],
      { cwd: elsewhere, env: bare },
    );
    expect(signed.code, signed.stderr).toBe(0);
    const doc = join(elsewhere, 'cfo-signoff.json');
    expect(JSON.parse(readFileSync(doc, 'utf8')).manifest).toEqual(status.document);
    const add = [
      'signers',
      'add',
      '--role',
      'cfo',
      '--name',
      'Frida Finance',
      '--key',
      join(elsewhere, 'cfo.pub'),
    ];
    expect((await runInProcess(add, { cwd, env })).code).toBe(0);
    // The partner moved on the installation before the document arrived: refused, naming it.
    const moved = { ...env, VALHALLA_PARTNER_URL: 'https://other-partner.example.test' };
    const refused = await runInProcess(['signoff', 'submit', doc], { cwd, env: moved });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(
      'sign-off refused: signed over another release manifest than the running one: partner.url (VALHALLA_PARTNER_URL): signed "https://partner.example.test/", running "https://other-partner.example.test/"',
    );
    const recorded = await runInProcess(['signoff', 'submit', doc], { cwd, env });
    expect(recorded.code, recorded.stderr).toBe(0);
    expect(recorded.stdout).toMatch(
      new RegExp(
        `^recorded sign-off #\\d+ by Frida Finance \\(cfo\\) over release manifest ${status.hash.slice(0, 12)}…`,
      ),
    );
    // A manifest file that is not one: a usage error naming the field.
    writeFileSync(join(elsewhere, 'bad.json'), JSON.stringify({ ...status.document, dedupKey: 'phone' }));
    const bad = await runInProcess(
      [
        'signoff',
        '--role',
        'cfo',
        '--name',
        'Frida Finance',
        '--key',
        'cfo.key',
        '--manifest',
        'bad.json',
        '--out',
        'x.json',
      ],
      { cwd: elsewhere, env: bare },
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad\.json is not a release manifest: dedupKey: /);
  });
});

describe('init', () => {
  it('is safe to run twice: the secret file (mode 0600) is created once and kept', async () => {
    const cwd = tempDir();
    const { VALHALLA_PSEUDONYM_SECRET: _, ...env } = testEnv(join(cwd, 'data'));
    const keyFile = join(cwd, 'data', 'pseudonym.key');

    const first = json<{ createdSecret: boolean; pseudonymSecret: string }>(
      await runInProcess(['init', '--json'], { cwd, env }),
    );
    expect(first).toMatchObject({ createdSecret: true, pseudonymSecret: keyFile });
    const secret = readFileSync(keyFile, 'utf8');
    expect(secret.trim()).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);

    const second = await runInProcess(['init'], { cwd, env });
    expect(second.code).toBe(0);
    expect(second.stdout).not.toContain('(created');
    expect(readFileSync(keyFile, 'utf8')).toBe(secret);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(second.stdout).not.toContain(secret.trim());

    // The data is still readable with the kept secret, and the installation was recorded once.
    const status = json<{ auditEntries: number }>(await runInProcess(['status', '--json'], { cwd, env }));
    expect(status.auditEntries).toBe(1);
    const exported = await runInProcess(['audit', 'export'], { cwd, env });
    expect(exported.stdout.match(/"system\.initialized"/g)).toHaveLength(1);
  });

  it('refuses to start (3) once the secret file is readable by others', async () => {
    const cwd = tempDir();
    const { VALHALLA_PSEUDONYM_SECRET: _, ...env } = testEnv(join(cwd, 'data'));
    expect((await runInProcess(['init'], { cwd, env })).code).toBe(0);
    const keyFile = join(cwd, 'data', 'pseudonym.key');
    const { chmodSync } = await import('node:fs');
    chmodSync(keyFile, 0o644);
    const result = await runInProcess(['init'], { cwd, env });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('chmod 600');
    expect(result.stderr).not.toContain(readFileSync(keyFile, 'utf8').trim());
  });
});
