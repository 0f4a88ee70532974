// Lead attributes at ingest: the extra columns a partner profile declares are kept, typed and checked;
// a bad one rejects its row with the line and the attribute, never the value; a column no attribute
// names is still reported as ignored.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type App, initialize, type MaskedLead, openApp } from '../../src/app/index.js';
import { declaredLeadAttributes, ingestDepsOf } from '../../src/app/ingest-deps.js';
import { createAuditLog } from '../../src/audit/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { type IngestOptions, type IngestSummary, ingestFile, LEAD_FIELDS } from '../../src/ingest/index.js';
import { createLogger } from '../../src/log/index.js';
import { loadPartnerProfile, type ProfileAttribute, type ProfileLead } from '../../src/partner/index.js';
import { createPseudonymizer } from '../../src/pii/index.js';
import { createApiToken, startServer } from '../../src/server/index.js';
import { createCycle, createDelivery, finishCycle, listLeads } from '../../src/store/index.js';
import { apiClient } from '../support/api.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { runInProcess, testEnv } from '../support/cli.js';
import { closeWorlds, world } from '../support/live-world.js';
import { tempDir } from '../support/tmp.js';

const NOW_ISO = '2026-11-20T12:00:00Z';
const TS = '2026-11-20T10:00:00Z';
const CRM = fileURLToPath(new URL('../../config/partners/crm-batch-contacts.json', import.meta.url));
const CRM_ATTRIBUTES = loadPartnerProfile(CRM).attributes ?? [];

/** A personal value that must never be echoed: it is searched for in everything the run wrote. */
const SECRET_TITLE = `Chief Secret Officer ${'x'.repeat(100)}`;

const BACKENDS = await backends();
afterAll(dropTestSchemas);
const opened: App[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const app of opened.splice(0)) await app.close();
});

async function setup(backend: Backend) {
  const dir = tempDir();
  const env = testEnv(join(dir, 'data'), { VALHALLA_DATABASE_URL: backend.databaseUrl() });
  const clock = new ManualClock(NOW_ISO);
  const config = loadConfig({ env, cwd: dir });
  const { app } = await initialize(config, { clock });
  opened.push(app);
  const logFile = join(dir, 'data', 'ingest.log');
  /** Ingest `text` as the app's ingest does, with these attributes declared. */
  const ingest = (
    name: string,
    text: string,
    attributes: readonly ProfileAttribute[],
    options: Partial<IngestOptions> = {},
  ) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    const deps = ingestDepsOf(config, {
      store: app.store,
      audit: createAuditLog(app.store, clock),
      clock,
      logger: createLogger({ level: 'trace', file: logFile }),
      pseudonymizer: createPseudonymizer(config.pseudonymSecret!),
    });
    return ingestFile({ ...deps, attributes }, { path, ...options });
  };
  return { app, ingest, logFile };
}

/** Everything a run leaves besides the leads: its outcomes, the audit chain, the rejects file, the log. */
async function leftBehind(app: App, summary: IngestSummary, logFile: string): Promise<string> {
  const outcomes = await app.store.db.selectFrom('ingest_outcomes').selectAll().execute();
  const audit = await app.store.db.selectFrom('audit_log').selectAll().execute();
  return [
    JSON.stringify(outcomes),
    JSON.stringify(audit),
    summary.rejectsFile === null ? '' : readFileSync(summary.rejectsFile, 'utf8'),
    readFileSync(logFile, 'utf8'),
  ].join('\n');
}

const header = (...extra: string[]) => [...LEAD_FIELDS, ...extra].join(',');
const row = (i: number, ...extra: string[]) =>
  [`EXT-${i}`, `Person ${i}`, `p${i}@example.com`, '', '', '70', TS, '', ...extra].join(',');

const TYPED: ProfileAttribute[] = [
  { name: 'title', type: 'string', pii: true, required: false, maxLength: 100 },
  { name: 'country', type: 'string', pii: false, required: true, maxLength: 64 },
  { name: 'seats', type: 'integer', pii: false, required: false },
  { name: 'revenue', type: 'number', pii: false, required: false },
  { name: 'consent', type: 'boolean', pii: true, required: false },
];

describe.each(BACKENDS.map((b) => [b.name, b] as const))('ingest attributes on %s', (_name, backend) => {
  it("keeps the crm profile's attributes by column name, trimmed; reports the columns none names", async () => {
    const { app, ingest, logFile } = await setup(backend);
    const text = [
      header('Title', 'country', 'notes'),
      row(1, ' Head of Sales ', 'DE', 'call back'), // 2: both kept, trimmed
      row(2, '', '', ''), // 3: empty: no attributes stored
      row(3, `"${SECRET_TITLE}"`, 'FR', ''), // 4: the title is longer than 100: rejected
      row(4, '', ' US ', 'x'), // 5: country only
    ].join('\n');
    const summary = await ingest('crm.csv', `${text}\n`, CRM_ATTRIBUTES);
    expect(summary).toMatchObject({ read: 4, accepted: 3, rejected: 1, ignoredColumns: ['notes'] });

    const leads = (await listLeads(app.store.db, { limit: 10 })).reverse();
    expect(leads.map((l) => [l.source_line, l.attributes])).toEqual([
      [2, { title: 'Head of Sales', country: 'DE' }],
      [3, null],
      [5, { title: null, country: 'US' }],
    ]);
    const raw = await app.store.db.selectFrom('leads').select(['source_line', 'attributes']).execute();
    expect(raw.find((r) => r.source_line === 3)?.attributes).toBeNull();
    // The column no attribute names is not kept anywhere.
    expect(JSON.stringify(raw)).not.toContain('call back');

    const outcomes = await app.store.db.selectFrom('ingest_outcomes').selectAll().execute();
    expect(outcomes.map((o) => [o.line, o.outcome, o.field, o.reason])).toEqual([
      [4, 'rejected', 'title', 'title: longer than 100 characters'],
    ]);
    const written = await leftBehind(app, summary, logFile);
    expect(written).toContain('longer than 100 characters');
    expect(written).not.toContain('Chief Secret Officer');
  });

  it('types each attribute and rejects a wrong type, a missing required one or a long one, naming line and field only', async () => {
    const { app, ingest, logFile } = await setup(backend);
    const text = [
      header('title', 'country', 'seats', 'revenue', 'consent'),
      row(1, 'CTO', 'DE', '12', '1.5e3', 'Yes'), // 2
      row(2, 'COO', 'FR', '-3', '0.25', 'FALSE'), // 3
      row(3, 'Founder', 'IT', '', '', '0'), // 4
      row(4, 'Lead', 'ES', '12.5', '', ''), // 5: not a whole number
      row(5, 'Lead', '', '1', '', ''), // 6: country required
      row(6, 'Lead', 'PT', '1', 'lots', 'maybe'), // 7: two problems
      row(7, `"${SECRET_TITLE}"`, 'NL', '1', '', ''), // 8: personal value too long
      row(8, '', 'BE', '9007199254740993', 'Infinity', ''), // 9: beyond a safe integer; not finite
    ].join('\n');
    const summary = await ingest('typed.csv', `${text}\n`, TYPED);
    expect(summary).toMatchObject({ read: 8, accepted: 3, rejected: 5, ignoredColumns: [] });
    const leads = (await listLeads(app.store.db, { limit: 10 })).reverse();
    expect(leads.map((l) => [l.source_line, l.attributes])).toEqual([
      [2, { title: 'CTO', country: 'DE', seats: 12, revenue: 1500, consent: true }],
      [3, { title: 'COO', country: 'FR', seats: -3, revenue: 0.25, consent: false }],
      [4, { title: 'Founder', country: 'IT', seats: null, revenue: null, consent: false }],
    ]);
    const outcomes = await app.store.db.selectFrom('ingest_outcomes').selectAll().orderBy('line').execute();
    expect(outcomes.map((o) => [o.line, o.field, o.reason])).toEqual([
      [5, 'seats', 'seats: must be a whole number'],
      [6, 'country', 'country: is required'],
      [7, 'revenue', 'revenue: must be a number; consent: must be true or false (true/false, yes/no or 1/0)'],
      [8, 'title', 'title: longer than 100 characters'],
      [9, 'seats', 'seats: must be a whole number; revenue: must be a number'],
    ]);
    const written = await leftBehind(app, summary, logFile);
    expect(written).not.toContain('Chief Secret Officer');
    expect(written).not.toContain('maybe');
    expect(written).not.toContain('lots');
  });

  it("reports an attribute's problems with the lead's own, in one reject", async () => {
    const { app, ingest } = await setup(backend);
    const text = [header('title', 'country'), row(1, 'CTO', '').replace('p1@example.com', 'not-an-email')];
    await ingest('both.csv', `${text.join('\n')}\n`, [CRM_ATTRIBUTES[0]!, TYPED[1]!]);
    const outcomes = await app.store.db.selectFrom('ingest_outcomes').selectAll().execute();
    expect(outcomes.map((o) => o.reason)).toEqual([
      'email: is not a valid e-mail address; country: is required',
    ]);
  });

  it('reads typed JSON values from JSONL by their exact key', async () => {
    const { app, ingest } = await setup(backend);
    const lead = (i: number, extra: Record<string, unknown>) =>
      JSON.stringify({
        external_id: `EXT-${i}`,
        name: `Person ${i}`,
        email: `p${i}@example.com`,
        score: 70,
        source_timestamp: TS,
        ...extra,
      });
    const text = [
      lead(1, { title: 'CTO', country: 'DE', seats: 12, revenue: 2.5, consent: true, Title: 'ignored' }),
      lead(2, { country: 'FR', seats: 1.5 }),
      lead(3, { country: 7 }),
      lead(4, { country: 'AT', consent: 'yes', seats: '4' }),
    ].join('\n');
    const summary = await ingest('leads.jsonl', `${text}\n`, TYPED);
    expect(summary).toMatchObject({ read: 4, accepted: 2, rejected: 2 });
    const leads = (await listLeads(app.store.db, { limit: 10 })).reverse();
    expect(leads.map((l) => [l.source_line, l.attributes])).toEqual([
      [1, { title: 'CTO', country: 'DE', seats: 12, revenue: 2.5, consent: true }],
      [4, { title: null, country: 'AT', seats: 4, revenue: null, consent: true }],
    ]);
    const outcomes = await app.store.db.selectFrom('ingest_outcomes').selectAll().orderBy('line').execute();
    expect(outcomes.map((o) => [o.line, o.reason])).toEqual([
      [2, 'seats: must be a whole number'],
      [3, 'country: must be text'],
    ]);
  });

  it('with no attributes declared (the default), every extra column is reported and none is kept', async () => {
    const { app, ingest } = await setup(backend);
    const text = [header('title', 'country'), row(1, 'CTO', 'DE')].join('\n');
    const summary = await ingest('none.csv', `${text}\n`, declaredLeadAttributes(app.config));
    expect(summary).toMatchObject({ accepted: 1, ignoredColumns: ['title', 'country'] });
    const raw = await app.store.db.selectFrom('leads').select('attributes').execute();
    expect(raw).toEqual([{ attributes: null }]);
  });
});

describe.each(BACKENDS.map((b) => [b.name, b] as const))(
  'VALHALLA_PARTNER_PROFILE=crm-batch-contacts: every door keeps its attributes, every view masks the personal one (%s)',
  (_name, backend) => {
    const operator = createApiToken('otto', 'operator');
    const title = (i: number) => `Jarl Door-${i} Secretsson`;
    const file = (i: number) =>
      `${[header('title', 'country', 'notes'), row(i, title(i), 'NO', 'call back')].join('\n')}\n`;

    it('the CLI (valhalla ingest, leads show, leads list), the app, and the dashboard upload through its thread', async () => {
      const dir = tempDir();
      const env = testEnv(join(dir, 'data'), {
        VALHALLA_DATABASE_URL: backend.databaseUrl(),
        VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts',
        VALHALLA_API_TOKENS: operator.entry,
        VALHALLA_LOG_LEVEL: 'warn',
      });
      expect((await runInProcess(['init'], { env, cwd: dir })).code).toBe(0);

      // The CLI.
      writeFileSync(join(dir, 'one.csv'), file(1));
      const ingested = await runInProcess(['ingest', 'one.csv', '--json'], { env, cwd: dir });
      expect(ingested.code, ingested.stderr).toBe(0);
      expect(JSON.parse(ingested.stdout)).toMatchObject({ accepted: 1, ignoredColumns: ['notes'] });

      // The app, then the dashboard's upload (the ingest thread, with the configuration it is handed).
      const app = await openApp({ config: loadConfig({ cwd: dir, env }), clock: new ManualClock(NOW_ISO) });
      opened.push(app);
      writeFileSync(join(dir, 'two.csv'), file(2));
      expect(await app.ingest({ path: join(dir, 'two.csv') })).toMatchObject({
        accepted: 1,
        ignoredColumns: ['notes'],
      });
      const server = await startServer({ app, port: 0, host: '127.0.0.1', webRoot: tempDir() });
      cleanups.push(() => server.close());
      const api = apiClient(server.url);
      const uploaded = await api<{ accepted: number; ignoredColumns: string[] }>('POST', '/api/ingest', {
        token: operator.token,
        body: file(3),
        type: 'text/csv',
      });
      expect(uploaded.status, uploaded.text).toBe(200);
      expect(uploaded.body).toMatchObject({ accepted: 1, ignoredColumns: ['notes'] });

      // Stored as given, by every door.
      const stored = (await listLeads(app.store.db, { limit: 10 })).reverse();
      expect(stored.map((l) => l.attributes)).toEqual(
        [1, 2, 3].map((i) => ({ title: title(i), country: 'NO' })),
      );

      // Shown masked: the API's lead list, the CLI's list and show.
      const listed = await api<{ leads: MaskedLead[] }>('GET', '/api/leads', { token: operator.token });
      expect(listed.status).toBe(200);
      expect(listed.body.leads.map((l) => l.attributes)).toEqual(
        [1, 2, 3].map(() => ({ title: '***', country: 'NO' })),
      );
      const shown = await runInProcess(['leads', 'show', String(stored[0]!.id)], { env, cwd: dir });
      expect(shown.code).toBe(0);
      expect(shown.stdout).toMatch(/attribute title:\s+\*\*\*\n/);
      expect(shown.stdout).toMatch(/attribute country:\s+NO\n/);
      const list = await runInProcess(['leads', 'list'], { env, cwd: dir });
      expect(list.stdout).toContain('title=*** country=NO');
      for (const text of [listed.text, shown.stdout, shown.stderr, list.stdout, list.stderr]) {
        expect(text).not.toContain('Secretsson');
      }
      const missing = await runInProcess(['leads', 'show', '999'], { env, cwd: dir });
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('no lead 999');

      // Ramp stage 1's review (the dashboard's confirmation, and `cycle confirm`): the batch's leads masked.
      const db = app.store.db;
      // The lead the app ingested at its own time: pending (the CLI's ran on the system clock).
      const pending = stored.find((l) => l.state === 'pending')!;
      const cycleId = await createCycle(db, {
        startedAt: Date.parse(NOW_ISO),
        phase: 4,
        kind: 'live',
        rampStage: 1,
        ceiling: 1,
        limitedBy: 'ramp stage 1',
      });
      await db.transaction().execute((trx) =>
        createDelivery(
          trx,
          {
            batchKey: 'batch-1',
            cycleId,
            kind: 'live',
            payloadSha256: 'x'.repeat(64),
            now: Date.parse(NOW_ISO),
          },
          [{ id: pending.id, leadKey: 'lk_1', exposure: 0 }],
        ),
      );
      await finishCycle(db, cycleId, {
        finishedAt: Date.parse(NOW_ISO) + 1,
        claimed: 1,
        actions: 1,
        summary: {},
      });
      const review = await api<{ batches: { leads: { attributes: unknown }[] }[] }>(
        'GET',
        '/api/cycles/review',
        {
          token: operator.token,
        },
      );
      expect(review.status, review.text).toBe(200);
      expect(review.body.batches[0]?.leads.map((l) => l.attributes)).toEqual([
        { title: '***', country: 'NO' },
      ]);
      const confirm = await runInProcess(['cycle', 'confirm'], { env, cwd: dir });
      expect(confirm.stdout).toContain('title=*** country=NO');
      for (const text of [review.text, confirm.stdout, confirm.stderr])
        expect(text).not.toContain('Secretsson');
    });
  },
);

describe('a live cycle under the crm-batch-contacts profile', () => {
  afterEach(closeWorlds);

  it("sends each lead's attributes as the profile maps them, and the partner takes them", async () => {
    const w = await world({ profile: 'crm-batch-contacts' });
    const sent: ProfileLead[] = [];
    w.beforeSend = (batch) => {
      sent.push(...batch.leads);
    };
    const at = new Date(w.clock.now() - 3_600_000).toISOString();
    const text = [
      'name,email,score,source_timestamp,title,country',
      `Ada Live,ada.live@leads.example.test,90,${at},Head of Sales,DE`,
      `Bo Live,bo.live@leads.example.test,80,${at},,`,
    ].join('\n');
    writeFileSync(join(w.dir, 'attributes.csv'), `${text}\n`);
    expect(await w.app.ingest({ path: join(w.dir, 'attributes.csv') })).toMatchObject({ accepted: 2 });
    await w.cycle();
    expect(sent.map((l) => [l.email, l.attributes])).toEqual([
      ['ada.live@leads.example.test', { title: 'Head of Sales', country: 'DE' }],
      ['bo.live@leads.example.test', {}],
    ]);
    const leads = await w.leads();
    expect([...leads.values()].map((l) => l.state)).toEqual(['exported', 'exported']);
  });
});
