/**
 * The partner profile from the operator's side, through the built binary: named in `.env` or for one
 * command, relative to the folder the command runs in; a profile that does not parse, maps a field
 * that does not exist or lacks a part is refused at start (exit 3, the configuration refused) with the
 * file, the path inside it and why, before anything is opened or sent.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Selectable } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { leadKey } from '../../src/engine/index.js';
import { SHIPPED_PROFILES_DIR } from '../../src/partner/index.js';
import { type SandboxPartner, startSandboxPartner } from '../../src/sandbox/index.js';
import type { Database } from '../../src/store/index.js';
import { leadFromRow } from '../../src/store/leads.js';

type LeadsRow = Selectable<Database['leads']>;

import { harnessScript, phase4Env, runBinary, testEnv } from '../support/cli.js';
import { spawnNode } from '../support/processes.js';
import { query } from '../support/sqlite.js';
import { tempDir } from '../support/tmp.js';
import { HOUR } from '../support/world.js';

const partners: SandboxPartner[] = [];
const children = new Set<ChildProcess>();
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(partners.map((p) => p.close()));
});

const crm = () => JSON.parse(readFileSync(join(SHIPPED_PROFILES_DIR, 'crm-batch-contacts.json'), 'utf8'));

/** A working folder with its own .env (data kept inside it). */
function installation(dotenv: string): { cwd: string; env: Record<string, string> } {
  const cwd = tempDir();
  writeFileSync(join(cwd, '.env'), dotenv);
  return { cwd, env: testEnv(join(cwd, 'data')) };
}

describe('the partner profile, as an operator names it', () => {
  it('a profile file named in .env, relative to the working folder: config show names it and its hash; status runs', async () => {
    const { cwd, env } = installation('VALHALLA_PARTNER_PROFILE=partners/acme.json\n');
    mkdirSync(join(cwd, 'partners'));
    writeFileSync(join(cwd, 'partners', 'acme.json'), JSON.stringify({ ...crm(), name: 'acme' }));
    const shown = await runBinary(['config', 'show', '--json'], { cwd, env });
    expect(shown.code, shown.stderr).toBe(0);
    const profile = (
      JSON.parse(shown.stdout) as { variables: { name: string; value: string; source: string }[] }
    ).variables.find((v) => v.name === 'VALHALLA_PARTNER_PROFILE');
    expect(profile).toMatchObject({ source: '.env' });
    expect(profile!.value).toMatch(
      new RegExp(`^acme \\(${join(cwd, 'partners', 'acme.json')}; sha256 [0-9a-f]{12}…\\)$`),
    );
    const init = await runBinary(['init'], { cwd, env });
    expect(init.code, init.stderr).toBe(0);
    const status = await runBinary(['status'], { cwd, env });
    expect(status.code, status.stderr).toBe(0);
  });

  it('refused at start, exit 3, naming the file, each path inside it and why: a field that does not exist, a missing part, JSON that does not parse', async () => {
    const { cwd, env } = installation('VALHALLA_PARTNER_PROFILE=acme.json\n');
    const file = join(cwd, 'acme.json');
    const wrong = crm();
    wrong.fields[1].from = 'full_name';
    delete wrong.answer;
    writeFileSync(file, JSON.stringify(wrong, null, 2));
    for (const command of [['run', '--once'], ['status'], ['ingest', 'leads.csv']]) {
      const result = await runBinary(command, { cwd, env });
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(3);
      expect(result.stderr).toContain(`VALHALLA_PARTNER_PROFILE="${file}": answer: is missing (required)`);
      expect(result.stdout).toBe('');
    }
    // Shape fixed, the mapping's source is checked: the field is named with the one it meant.
    wrong.answer = crm().answer;
    writeFileSync(file, JSON.stringify(wrong, null, 2));
    const unknownField = await runBinary(['run', '--once'], { cwd, env });
    expect(unknownField.code).toBe(3);
    expect(unknownField.stderr).toMatch(
      new RegExp(`VALHALLA_PARTNER_PROFILE="${file}": fields\\[1\\]\\.from: .*full_name`),
    );
    writeFileSync(file, '{\n  "name": "acme",\n  "fields": [\n');
    const notJson = await runBinary(['run', '--once'], { cwd, env });
    expect(notJson.code).toBe(3);
    expect(notJson.stderr).toMatch(/\(the whole file\): is not JSON: .* at line 4, column 1/);
    // Nothing was opened: no database in the data folder.
    expect(() => readFileSync(join(cwd, 'data', 'valhalla.db'))).toThrow();
  });

  it('set for one command: a name no shipped profile has is refused, listing the shipped ones; the shipped CRM profile is taken', async () => {
    const { cwd, env } = installation('');
    const unknown = await runBinary(['status'], {
      cwd,
      env: { ...env, VALHALLA_PARTNER_PROFILE: 'hubspot' },
    });
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain(
      'VALHALLA_PARTNER_PROFILE="hubspot": no shipped profile has this name (shipped: crm-batch-contacts, valhalla); give a profile file\'s path',
    );
    const shipped = await runBinary(['config', 'show'], {
      cwd,
      env: { ...env, VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts' },
    });
    expect(shipped.code, shipped.stderr).toBe(0);
    expect(shipped.stdout).toContain('crm-batch-contacts (');
  });
});

describe("live in the CRM profile, from the operator's side", () => {
  it("binary ingest keeps the declared columns, a Phase 4 worker sends one batch, the CRM refuses one lead: quarantined with its reason masked, the rest exported once, as the CRM's ledger says", async () => {
    const cwd = tempDir();
    const token = 'crm-e2e-token-0123456789';
    const crmPartner = await startSandboxPartner({
      certDir: join(cwd, 'cert'),
      profile: 'crm-batch-contacts',
      bearerToken: token,
    });
    partners.push(crmPartner);
    const env = phase4Env(join(cwd, 'data'), crmPartner, {
      VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts',
      VALHALLA_PARTNER_BEARER_TOKEN: token,
      VALHALLA_LOG_LEVEL: 'warn',
    });
    const dbFile = join(cwd, 'data', 'valhalla.db');
    expect((await runBinary(['init'], { cwd, env })).code).toBe(0);
    const now = Date.now();
    const rows = [
      'external_id,name,email,phone,company,score,source_timestamp,value,title,country,shoe_size',
    ];
    for (let i = 0; i < 4; i++) {
      rows.push(
        `crm-${i},Grace Hopper ${i},grace.${i}@example.org,,Navy Labs,${90 - i},${new Date(now - HOUR).toISOString()},250,Rear Admiral ${i},US,${40 + i}`,
      );
    }
    writeFileSync(join(cwd, 'leads.csv'), `${rows.join('\n')}\n`);
    const ingest = await runBinary(['ingest', 'leads.csv', '--json'], { cwd, env });
    expect(ingest.code, ingest.stderr).toBe(0);
    expect(JSON.parse(ingest.stdout)).toMatchObject({ accepted: 4, ignoredColumns: ['shoe_size'] });
    const stored = query<LeadsRow>(dbFile, 'select * from leads order by id').map((r) => leadFromRow(r));
    expect(stored.map((l) => l.attributes)).toEqual(
      [0, 1, 2, 3].map((i) => ({ title: `Rear Admiral ${i}`, country: 'US' })),
    );
    // The CRM refuses grace.2, echoing her e-mail in its reason.
    crmPartner.setFaults({
      refuseLeads: { leadKeys: [leadKey(stored[2]!)], reason: 'Contact grace.2@example.org is not valid' },
    });

    // The Phase 4 test worker (the gates given, as the fault suite runs it), for one cycle.
    const worker = spawnNode(harnessScript('live-worker'), ['1'], {
      cwd,
      env: { ...env, VALHALLA_TEST_INTERVAL_MS: '10' },
      children,
    });
    expect((await worker.exited).code, worker.out()).toBe(0);
    const report = worker
      .out()
      .split('\n')
      .find((line) => line.startsWith('{'));
    expect(JSON.parse(report!)).toMatchObject({
      kind: 'live',
      claimed: 4,
      accepted: 3,
      refusedByPartner: 1,
      quarantined: 1,
    });
    const ledger = crmPartner.leads();
    for (const [i, lead] of stored.entries()) {
      const record = ledger[leadKey(lead)]!;
      expect(record.received, `lead ${i}`).toBe(1);
      expect(record.acceptedAt !== null, `lead ${i}`).toBe(i !== 2);
    }
    const states = query<{ state: string }>(dbFile, 'select state from leads order by id').map(
      (r) => r.state,
    );
    expect(states).toEqual(['exported', 'exported', 'quarantined', 'exported']);

    const quarantined = await runBinary(['quarantine', 'list'], { cwd, env });
    expect(quarantined.code, quarantined.stderr).toBe(0);
    expect(quarantined.stdout).toContain('refused by the partner: Contact *** is not valid');
    expect(quarantined.stdout).not.toContain('grace.2@example.org');
    const shown = await runBinary(['leads', 'show', String(stored[2]!.id)], { cwd, env });
    expect(shown.code, shown.stderr).toBe(0);
    // The job title is personal data in this profile: masked; the country is not.
    expect(shown.stdout).not.toContain('Rear Admiral');
    expect(shown.stdout).toContain('US');
    const list = await runBinary(['leads', 'list'], { cwd, env });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/\sATTRIBUTES$/);
    expect(list.stdout).toContain('title=*** country=US');
    expect(list.stdout).not.toContain('Rear Admiral');
  });
});
