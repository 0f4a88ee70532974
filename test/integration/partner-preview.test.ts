/**
 * `valhalla partner preview`: the request a partner profile would make of the leads the next cycle
 * picks, run through the CLI in process against a real SQLite installation. Masked by default; an
 * admin token's reveal shows the values and is audited once, without them; anything else is refused
 * with nothing shown and nothing written.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { maskEmail, maskName } from '../../src/pii/index.js';
import { createApiToken } from '../../src/server/index.js';
import { openStore, selectEligible } from '../../src/store/index.js';
import { REPO_ROOT, runBinary, runInProcess, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { DAY, HOUR } from '../support/world.js';

const PARTNERS = join(REPO_ROOT, 'config', 'partners');
const admin = createApiToken('ada-admin', 'admin');
const viewer = createApiToken('vic-viewer', 'viewer');
const operator = createApiToken('oli-operator', 'operator');

/** The leads, written in an order unlike the selection's (so ids differ from the cycle's order). */
const LEADS = [
  {
    key: 'dora',
    name: 'Dora Dunn',
    email: 'dora.dunn@example.test',
    score: 70,
    ageH: 5,
    phone: '+44 20 7946 0004',
  },
  { key: 'cleo', name: 'Cleo Cole', email: 'cleo.cole@example.test', score: 80, ageH: 2, phone: '' },
  {
    key: 'bert',
    name: 'Bert Brown',
    email: 'bert.brown@example.test',
    score: 80,
    ageH: 9,
    phone: '+44 20 7946 0002',
  },
  {
    key: 'ada',
    name: 'Ada Lovelace',
    email: 'ada.lovelace@example.test',
    score: 90,
    ageH: 1,
    phone: '+44 20 7946 0001',
  },
  { key: 'low', name: 'Lou Low', email: 'lou.low@example.test', score: 30, ageH: 1, phone: '' },
] as const;
/** Every personal value as given and as stored (phones are kept as their digits). */
const ALL_VALUES: string[] = LEADS.flatMap((l) => [l.name, l.email, ...(l.phone ? [l.phone] : [])]);

let cwd: string;
let env: Record<string, string>;
let dbPath: string;
/** Lead ids by key, as ingested. */
const id: Record<string, number> = {};

function auditRows(): { action: string; actor: string; details: string }[] {
  const db = new SqliteDatabase(dbPath, { readonly: true });
  try {
    return db.prepare('select action, actor, details from audit_log order by seq').all() as {
      action: string;
      actor: string;
      details: string;
    }[];
  } finally {
    db.close();
  }
}

const preview = (args: string[]) => runInProcess(['partner', 'preview', ...args], { env, cwd });

beforeAll(async () => {
  cwd = tempDir('valhalla-preview-');
  dbPath = join(cwd, 'preview.db');
  env = testEnv(join(cwd, 'data'), {
    VALHALLA_DATABASE_URL: dbPath,
    VALHALLA_PARTNER_URL: 'https://partner.example.test/base/',
    VALHALLA_API_TOKENS: [admin.entry, viewer.entry, operator.entry].join(','),
  });
  expect((await runInProcess(['init'], { env, cwd })).code).toBe(0);
  const rows = ['name,email,phone,company,external_id,score,source_timestamp,value'];
  for (const l of LEADS) {
    const at = new Date(Date.now() - l.ageH * HOUR).toISOString();
    rows.push(`${l.name},${l.email},${l.phone},Acme ${l.key},CRM-${l.key}-000777,${l.score},${at},1200`);
  }
  writeFileSync(join(cwd, 'leads.csv'), `${rows.join('\n')}\n`);
  const ingest = await runInProcess(['ingest', 'leads.csv', '--json'], { env, cwd });
  expect(ingest.code).toBe(0);
  const db = new SqliteDatabase(dbPath, { readonly: true });
  const stored = db.prepare('select id, email, phone from leads').all() as {
    id: number;
    email: string;
    phone: string | null;
  }[];
  for (const row of stored) {
    const lead = LEADS.find((l) => l.email === row.email);
    if (lead) id[lead.key] = row.id;
    if (row.phone) ALL_VALUES.push(row.phone);
  }
  db.close();
  expect(Object.keys(id)).toHaveLength(LEADS.length);
});

describe('valhalla partner preview', () => {
  it('previews the default profile: the same body shape as today, PII masked, leads in the cycle’s order', async () => {
    const before = auditRows().length;
    const text = await preview([]);
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('profile valhalla (');
    expect(text.stdout).toContain(join('config', 'partners', 'valhalla.json'));
    expect(text.stdout).toContain('personal data MASKED');
    expect(text.stdout).toContain('POST https://partner.example.test/base/api/leads');
    expect(text.stdout).toContain('Idempotency-Key: preview');
    expect(text.stdout).toMatch(/Authorization: Bearer <from VALHALLA_PARTNER_TOKEN_URL/);
    for (const value of ALL_VALUES) expect(text.stdout).not.toContain(value);
    expect(text.stdout).toContain(maskEmail('ada.lovelace@example.test'));
    expect(text.stdout).toContain(maskName('Ada Lovelace'));

    const json = await preview(['--json']);
    expect(json.code).toBe(0);
    for (const value of ALL_VALUES) expect(json.stdout).not.toContain(value);
    const shown = JSON.parse(json.stdout);
    expect(shown).toMatchObject({ masked: true, selection: 'dry_run', problems: [] });
    // The cycle's order: score desc, source time asc, id asc (bert and cleo share 80; bert is older).
    expect(shown.leads.map((l: { id: number }) => l.id)).toEqual([id.ada, id.bert, id.cleo]);
    const store = await openStore({ kind: 'sqlite', path: dbPath });
    try {
      const eligible = await selectEligible(store.db, {
        minScore: 40,
        freshSince: Date.now() - 14 * DAY,
        limit: 3,
        notDryRun: true,
      });
      expect(shown.leads.map((l: { id: number }) => l.id)).toEqual(eligible.map((l) => l.id));
    } finally {
      await store.close();
    }
    // The body as the engine sends a batch: its leads in id order, each item today's payload.
    expect(shown.bodyOrder).toEqual([id.ada!, id.bert!, id.cleo!].sort((a, b) => a - b));
    const items = shown.request.body.leads as Record<string, unknown>[];
    expect(items).toHaveLength(3);
    expect(Object.keys(items[0]!)).toEqual([
      'idempotency_key',
      'external_id',
      'name',
      'email',
      'phone',
      'company',
      'score',
      'source_timestamp',
      'value',
    ]);
    const ada = items.find((i) => i.score === 90)!;
    expect(ada).toMatchObject({
      idempotency_key: shown.leads[0].leadKey,
      name: maskName('Ada Lovelace'),
      email: maskEmail('ada.lovelace@example.test'),
      phone: '***-***-0001',
      company: 'Acm***',
      external_id: '***0777',
      value: 1200,
      source_timestamp: shown.leads[0].sourceTimestamp,
    });
    // Cleo has no phone: null as today, not a masked empty string.
    expect(items.find((i) => i.email === maskEmail('cleo.cole@example.test'))?.phone).toBeNull();
    // A masked preview writes nothing.
    expect(auditRows()).toHaveLength(before);
  });

  it('previews the CRM profile as {"inputs":[{"properties":…}]} with a bearer token from the environment', async () => {
    const run = await preview([
      '--profile',
      join(PARTNERS, 'crm-batch-contacts.json'),
      '--limit',
      '10',
      '--json',
    ]);
    expect(run.code).toBe(0);
    for (const value of ALL_VALUES) expect(run.stdout).not.toContain(value);
    const shown = JSON.parse(run.stdout);
    expect(shown.profile.name).toBe('crm-batch-contacts');
    expect(shown.leads).toHaveLength(4); // the score-30 lead is never picked
    expect(shown.request.path).toBe('/crm/v3/objects/contacts/batch/create');
    expect(shown.request.headers).toContainEqual({
      name: 'Authorization',
      value: 'Bearer <from the environment>',
    });
    expect(shown.request.headers.map((h: { name: string }) => h.name)).not.toContain('Idempotency-Key');
    expect(Object.keys(shown.request.body)).toEqual(['inputs']);
    for (const input of shown.request.body.inputs) {
      expect(Object.keys(input)).toEqual(['properties']);
      expect(input.properties.valhalla_lead_key).toMatch(/^lk_/);
    }
    const cleo = shown.request.body.inputs.find(
      (i: { properties: { email: string } }) => i.properties.email === maskEmail('cleo.cole@example.test'),
    );
    // ifNull omit: no phone member at all.
    expect(cleo.properties).not.toHaveProperty('phone');
    expect(cleo.properties.full_name).toBe(maskName('Cleo Cole'));
  });

  it('refuses --limit above 10 (never clamped) and a profile that does not load, naming the file and the path in it', async () => {
    const over = await preview(['--limit', '11']);
    expect(over.code).toBe(2);
    expect(over.stderr).toContain('must be from 1 to 10');
    expect(over.stdout).toBe('');

    const broken = JSON.parse(readFileSync(join(PARTNERS, 'valhalla.json'), 'utf8'));
    broken.fields[2].from = 'nmae';
    const file = join(cwd, 'broken-profile.json');
    writeFileSync(file, JSON.stringify(broken));
    const refused = await preview(['--profile', 'broken-profile.json']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(file);
    expect(refused.stderr).toContain('fields[2].from');
    expect(refused.stdout).toBe('');

    const missing = await preview(['--profile', 'no-such-profile.json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(join(cwd, 'no-such-profile.json'));
  });

  it('names a lead the profile cannot map (a required value missing) and still previews the others', async () => {
    const strict = JSON.parse(readFileSync(join(PARTNERS, 'valhalla.json'), 'utf8'));
    strict.name = 'phone-required';
    strict.fields[4].required = true; // phone
    writeFileSync(join(cwd, 'phone-required.json'), JSON.stringify(strict));
    const run = await preview(['--profile', 'phone-required.json']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      new RegExp(
        `lead ${id.cleo} \\(L-[^)]+\\): fields\\[4\\] → "phone": phone is required here and the lead has none`,
      ),
    );
    for (const value of ALL_VALUES) expect(run.stdout).not.toContain(value);
    const shown = JSON.parse((await preview(['--profile', 'phone-required.json', '--json'])).stdout);
    expect(shown.problems).toEqual([
      expect.objectContaining({ leadId: id.cleo, where: 'fields[4] → "phone"' }),
    ]);
    expect(shown.request.body.leads).toHaveLength(2);
    expect(shown.leads.find((l: { id: number }) => l.id === id.cleo).inRequest).toBe(false);
  });

  it('refuses --reveal without a token, with a viewer’s, an operator’s or an unknown one: exit 3, nothing shown, nothing audited', async () => {
    const before = auditRows().length;
    const attempts = [
      ['--reveal'],
      ['--reveal', '--admin-token', viewer.token],
      ['--reveal', '--admin-token', operator.token],
      ['--reveal', '--admin-token', `${admin.token}x`],
    ];
    for (const args of attempts) {
      const run = await preview(args);
      expect(run.code).toBe(3);
      expect(run.stderr).toContain('nothing was revealed');
      expect(run.stdout).toBe('');
      for (const value of ALL_VALUES) expect(run.stderr).not.toContain(value);
    }
    expect((await preview(['--reveal', '--admin-token', viewer.token])).stderr).toContain(
      'role viewer, not admin',
    );
    // An admin token that is no longer configured (revoked) is unknown.
    const revoked = await runInProcess(['partner', 'preview', '--reveal', '--admin-token', admin.token], {
      env: { ...env, VALHALLA_API_TOKENS: viewer.entry },
      cwd,
    });
    expect(revoked.code).toBe(3);
    expect(revoked.stdout).toBe('');
    expect(auditRows()).toHaveLength(before);
  });

  it('reveals the values to an admin token and audits it once, naming the token, the profile and the leads, never the values', async () => {
    const before = auditRows();
    const run = await preview(['--reveal', '--admin-token', admin.token]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('UNMASKED');
    expect(run.stdout).toContain('"email": "ada.lovelace@example.test"');
    expect(run.stdout).toContain('"name": "Ada Lovelace"');
    expect(run.stdout).toContain('"phone": "442079460001"');
    const after = auditRows();
    expect(after).toHaveLength(before.length + 1);
    const entry = after.at(-1)!;
    expect(entry.action).toBe('partner.preview_revealed');
    expect(entry.actor).toBe('test-operator');
    const details = JSON.parse(entry.details);
    expect(details).toMatchObject({ tokenName: 'ada-admin', profile: 'valhalla' });
    expect(details.profileSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(details.leads.map((l: { id: number }) => l.id)).toEqual([id.ada, id.bert, id.cleo]);
    for (const l of details.leads) expect(l.pseudonym).toMatch(/^L-/);
    for (const value of [...ALL_VALUES, 'Acme', 'CRM-']) expect(entry.details).not.toContain(value);
    // The chain still verifies.
    expect((await runInProcess(['audit', 'verify'], { env, cwd })).code).toBe(0);
  });

  it('--admin-token - reads the token from standard input (out of the shell history); a viewer’s is refused the same way', async () => {
    const before = auditRows().length;
    const refused = await runInProcess(['partner', 'preview', '--reveal', '--admin-token', '-'], {
      env,
      cwd,
      stdin: `${viewer.token}\n`,
    });
    expect(refused.code).toBe(3);
    expect(refused.stdout).toBe('');
    expect(auditRows()).toHaveLength(before);
    const run = await runInProcess(['partner', 'preview', '--reveal', '--admin-token', '-'], {
      env,
      cwd,
      stdin: `${admin.token}\n`,
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('"email": "ada.lovelace@example.test"');
    expect(auditRows()).toHaveLength(before + 1);
    expect(JSON.parse(auditRows().at(-1)!.details)).toMatchObject({ tokenName: 'ada-admin' });
  });

  it('shows a personal attribute masked (whatever its type), a non-personal one as it is, and the values only on --reveal', async () => {
    const crm = JSON.parse(readFileSync(join(PARTNERS, 'crm-batch-contacts.json'), 'utf8'));
    crm.name = 'crm-with-birth-year';
    crm.attributes.push({ name: 'birth_year', type: 'integer', pii: true });
    crm.fields.push({ to: 'birth_year', from: 'attributes.birth_year', type: 'integer', ifNull: 'omit' });
    writeFileSync(join(cwd, 'crm-birth-year.json'), JSON.stringify(crm));
    const secrets = { title: 'Countess Title-Secret of Lovelace', birth_year: 1815 };
    const db = new SqliteDatabase(dbPath);
    try {
      db.prepare('update leads set attributes = ? where id = ?').run(
        JSON.stringify({ ...secrets, country: 'UK' }),
        id.ada,
      );
    } finally {
      db.close();
    }
    const ada = (body: { inputs: { properties: Record<string, unknown> }[] }, email: string) =>
      body.inputs.find((i) => i.properties.email === email)?.properties;

    const masked = await preview(['--profile', 'crm-birth-year.json', '--json']);
    expect(masked.code).toBe(0);
    expect(masked.stdout).not.toContain('Title-Secret');
    expect(masked.stdout).not.toContain('1815');
    const shown = JSON.parse(masked.stdout);
    expect(shown.problems).toEqual([]);
    expect(ada(shown.request.body, maskEmail('ada.lovelace@example.test'))).toMatchObject({
      jobtitle: '***',
      country: 'UK',
      birth_year: '***',
    });
    const text = await preview(['--profile', 'crm-birth-year.json']);
    expect(text.code).toBe(0);
    expect(text.stdout).not.toContain('Title-Secret');
    expect(text.stdout).not.toContain('1815');

    const before = auditRows().length;
    const revealed = await preview([
      '--profile',
      'crm-birth-year.json',
      '--json',
      '--reveal',
      '--admin-token',
      admin.token,
    ]);
    expect(revealed.code).toBe(0);
    const real = JSON.parse(revealed.stdout);
    expect(ada(real.request.body, 'ada.lovelace@example.test')).toMatchObject({
      jobtitle: secrets.title,
      country: 'UK',
      birth_year: 1815,
    });
    expect(auditRows()).toHaveLength(before + 1);
    expect(auditRows().at(-1)!.details).not.toContain('Title-Secret');
  });

  it('the built binary finds the shipped profile beside the package, from any working directory', async () => {
    const run = await runBinary(['partner', 'preview', '--limit', '1'], { env, cwd });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(
      `profile valhalla (${join(REPO_ROOT, 'config', 'partners', 'valhalla.json')})`,
    );
    for (const value of ALL_VALUES) expect(run.stdout).not.toContain(value);
  });
});
