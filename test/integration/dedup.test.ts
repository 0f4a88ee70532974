/**
 * A lead is one person under either identity (README "Leads and ingest"): a row whose normalised
 * e-mail OR external id matches a stored lead is a duplicate, whatever the installation's dedup rule,
 * within one file as across files and runs at once, and after the person's data was erased. The rule
 * only picks the primary key. The rule is recorded per installation (`init`, or the first start after
 * the upgrade), and an installation from before migration 0013 gets its leads' identity keys at that
 * start. The real app, ingest and store on SQLite and PostgreSQL.
 */
import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type App, initialize, isAppError, openApp } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { type DedupKeyKind, loadConfig } from '../../src/config/index.js';
import type { IngestSummary } from '../../src/ingest/index.js';
import { createPseudonymizer } from '../../src/pii/index.js';
import { eraseLead } from '../../src/privacy/erasure.js';
import { countLeadsByState, getRuntimeValue, scanLeadsByState } from '../../src/store/index.js';
import { identityHex, keyBytes, keyHex, leadFromRow } from '../../src/store/leads.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { HOUR, NOW } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
const opened: App[] = [];
afterEach(async () => {
  for (const app of opened.splice(0).reverse()) await app.close();
});
const HEADER = 'external_id,name,email,phone,company,score,source_timestamp,value';
const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';
const keys = createPseudonymizer(SECRET);

interface Installation {
  dir: string;
  env: Record<string, string>;
  app: App;
  /** The same installation opened again, with `extra` over its settings (undefined: not set). */
  reopen(extra?: Record<string, string | undefined>): Promise<App>;
  ingest(name: string, rows: [externalId: string, email: string][], app?: App): Promise<IngestSummary>;
}

async function installation(backend: Backend, rule: DedupKeyKind = 'email'): Promise<Installation> {
  const dir = tempDir();
  const env = testEnv(join(dir, 'data'), {
    VALHALLA_DATABASE_URL: backend.databaseUrl(),
    VALHALLA_PSEUDONYM_SECRET: SECRET,
    ...(rule === 'email' ? {} : { VALHALLA_DEDUP_KEY: rule }),
  });
  const { app } = await initialize(loadConfig({ env, cwd: dir }), { clock: new ManualClock(NOW) });
  opened.push(app);
  const at = new Date(NOW - HOUR).toISOString();
  const self: Installation = {
    dir,
    env,
    app,
    async reopen(extra = {}) {
      const again = await openApp({
        config: loadConfig({ env: { ...env, ...extra }, cwd: dir }),
        clock: new ManualClock(NOW),
      });
      opened.push(again);
      return again;
    },
    ingest(name, rows, on = self.app) {
      const path = join(dir, name);
      const lines = rows.map(([id, email], i) => `${id},Person ${i},${email},,Co,80,${at},10`);
      writeFileSync(path, `${[HEADER, ...lines].join('\n')}\n`);
      return on.ingest({ path });
    },
  };
  return self;
}

async function outcomesOf(app: App, runId: number) {
  return app.store.db
    .selectFrom('ingest_outcomes')
    .select(['line', 'outcome', 'field', 'lead_id', 'reason'])
    .where('run_id', '=', runId)
    .orderBy('line')
    .execute();
}

async function leadByExternalId(app: App, externalId: string) {
  return leadFromRow(
    await app.store.db
      .selectFrom('leads')
      .selectAll()
      .where('external_id', '=', externalId)
      .executeTakeFirstOrThrow(),
  );
}

/** The identity keys a lead holds in `lead_identities` (what the table keeps of each, in hex), sorted. */
/** What `lead_identities` holds of these keys, sorted as `identitiesOf` returns them. */
function held(...keys: string[]): string[] {
  return keys.map(identityHex).sort();
}

async function identitiesOf(app: App, leadId: number): Promise<string[]> {
  const rows = await app.store.db
    .selectFrom('lead_identities')
    .select('key')
    .where('lead_id', '=', leadId)
    .execute();
  return rows.map((r) => keyHex(r.key)).sort();
}

describe.each(list)('a lead is one person under either identity, on $name', (backend: Backend) => {
  it.each(['email', 'external_id'] as const)(
    'with the %s rule: the same e-mail under a new id, or the same id under a new e-mail, is a duplicate; both new is a lead; within a file too',
    async (rule) => {
      const site = await installation(backend, rule);
      const first = await site.ingest('first.csv', [
        ['EXT-1', 'person1@example.com'],
        ['EXT-2', 'person2@example.com'],
      ]);
      expect(first).toMatchObject({ accepted: 2, duplicate: 0 });
      const one = await leadByExternalId(site.app, 'EXT-1');
      const two = await leadByExternalId(site.app, 'EXT-2');

      const second = await site.ingest('second.csv', [
        ['EXT-10', ' Person1@Example.COM '], // 2: same e-mail, new id
        ['EXT-2', 'person20@example.com'], // 3: same id, new e-mail
        ['EXT-30', 'person30@example.com'], // 4: both new
        ['EXT-40', 'person40@example.com'], // 5: both new
        ['EXT-41', 'PERSON40@example.com'], // 6: line 5's e-mail
        ['EXT-40', 'person42@example.com'], // 7: line 5's id
      ]);
      expect(second).toMatchObject({ read: 6, accepted: 2, duplicate: 4, rejected: 0 });
      const forty = await leadByExternalId(site.app, 'EXT-40');
      expect(await outcomesOf(site.app, second.runId)).toEqual([
        {
          line: 2,
          outcome: 'duplicate',
          field: 'email',
          lead_id: one.id,
          reason: `duplicate: e-mail matches lead ${one.id}, stored by ingest run ${first.runId}`,
        },
        {
          line: 3,
          outcome: 'duplicate',
          field: 'external_id',
          lead_id: two.id,
          reason: `duplicate: external id matches lead ${two.id}, stored by ingest run ${first.runId}`,
        },
        {
          line: 6,
          outcome: 'duplicate',
          field: 'email',
          lead_id: forty.id,
          reason: `duplicate: e-mail matches line 5 of this file (lead ${forty.id})`,
        },
        {
          line: 7,
          outcome: 'duplicate',
          field: 'external_id',
          lead_id: forty.id,
          reason: `duplicate: external id matches line 5 of this file (lead ${forty.id})`,
        },
      ]);
      const stored = (
        await site.app.store.db
          .selectFrom('leads')
          .select(['id', 'external_id', 'email', 'dedup_key'])
          .orderBy('id')
          .execute()
      ).map(leadFromRow);
      expect(stored.map((l) => [l.external_id, l.email])).toEqual([
        ['EXT-1', 'person1@example.com'],
        ['EXT-2', 'person2@example.com'],
        ['EXT-30', 'person30@example.com'],
        ['EXT-40', 'person40@example.com'],
      ]);
      // Both identities keyed, and nothing else; the rule's is the primary key.
      for (const l of stored) {
        const emailKey = keys.dedupKey('email', l.email);
        const externalIdKey = keys.dedupKey('external_id', l.external_id!);
        expect(await identitiesOf(site.app, l.id)).toEqual(held(emailKey, externalIdKey));
        expect(l.dedup_key).toBe(rule === 'email' ? emailKey : externalIdKey);
      }
      expect(
        Number(
          (
            await site.app.store.db
              .selectFrom('lead_identities')
              .select((eb) => eb.fn.countAll<number>().as('n'))
              .executeTakeFirstOrThrow()
          ).n,
        ),
      ).toBe(2 * stored.length);

      // The rejects file names the identity and the lead, never the value.
      const rejects = readFileSync(second.rejectsFile!, 'utf8');
      expect(
        rejects
          .trimEnd()
          .split('\n')
          .map((l) => JSON.parse(l)),
      ).toEqual(
        (await outcomesOf(site.app, second.runId)).map((o) => ({
          run: second.runId,
          line: o.line,
          problems: [{ field: o.field, message: o.reason }],
        })),
      );
      const audit = await site.app.store.db
        .selectFrom('audit_log')
        .select('details')
        .where('action', '=', 'ingest.rows')
        .orderBy('seq', 'desc')
        .executeTakeFirstOrThrow();
      expect(JSON.parse(audit.details).duplicates).toEqual([
        { line: 2, of: one.id, by: ['email'] },
        { line: 3, of: two.id, by: ['external_id'] },
        { line: 6, of: forty.id, by: ['email'] },
        { line: 7, of: forty.id, by: ['external_id'] },
      ]);
      for (const text of [rejects, audit.details, JSON.stringify(await outcomesOf(site.app, second.runId))]) {
        expect(text).not.toMatch(/person\d|EXT-/i);
      }
    },
  );

  it('three ingests at once sharing e-mails and ids: no e-mail and no id is ever stored twice', async () => {
    const site = await installation(backend);
    const other = await site.reopen();
    const people = Array.from({ length: 300 }, (_, i) => i);
    const [a, b, c] = await Promise.all([
      site.ingest(
        'a.csv',
        people.map((i) => [`A-${i}`, `p${i}@example.com`]),
      ),
      site.ingest(
        'b.csv',
        people.map((i) => [`B-${i}`, `P${i}@EXAMPLE.com`]),
        other,
      ),
      site.ingest(
        'c.csv',
        people.map((i) => [`A-${i}`, `other${i}@example.com`]),
        other,
      ),
    ]);
    // Which of a person's rows comes first is the race's; whichever it is, no e-mail and no id is
    // stored twice (b's and c's rows share neither, so both may be stored when a's was not first).
    const stored = await site.app.store.db.selectFrom('leads').select(['email', 'external_id']).execute();
    expect(new Set(stored.map((l) => l.email)).size).toBe(stored.length);
    expect(new Set(stored.map((l) => l.external_id)).size).toBe(stored.length);
    expect(stored.length).toBe(a.accepted + b.accepted + c.accepted);
    expect(a.duplicate + b.duplicate + c.duplicate + stored.length).toBe(3 * people.length);
    expect(stored.length).toBeGreaterThanOrEqual(people.length);
    // Three writers at once: the counts the database keeps by state still equal the rows.
    expect(await countLeadsByState(site.app.store.db)).toEqual(await scanLeadsByState(site.app.store.db));
  });

  it.each(['email', 'external_id'] as const)(
    'with the %s rule, an erased person stays out under either identity; erasing again finds the lead by e-mail',
    async (rule) => {
      const site = await installation(backend, rule);
      const first = await site.ingest('first.csv', [['CRM-7', 'seven@example.com']]);
      const lead = await leadByExternalId(site.app, 'CRM-7');
      const identities = await identitiesOf(site.app, lead.id);
      expect(identities).toEqual(
        held(keys.dedupKey('email', 'seven@example.com'), keys.dedupKey('external_id', 'CRM-7')),
      );
      const erased = await eraseLead(site.app, { target: { email: 'seven@example.com' }, reason: 'DSR-7' });
      expect(erased.kind).toBe('erased');
      const after = leadFromRow(
        await site.app.store.db
          .selectFrom('leads')
          .selectAll()
          .where('id', '=', lead.id)
          .executeTakeFirstOrThrow(),
      );
      // The data goes; the keyed hashes stay (meaningless without the secret): they keep the person out.
      expect(after).toMatchObject({
        email: '(erased)',
        external_id: null,
        dedup_key: lead.dedup_key,
      });
      expect(await identitiesOf(site.app, lead.id)).toEqual(identities);

      const again = await site.ingest('again.csv', [
        ['CRM-70', 'Seven@example.com'],
        ['CRM-7', 'seventy@example.com'],
      ]);
      expect(again).toMatchObject({ accepted: 0, duplicate: 2 });
      expect((await outcomesOf(site.app, again.runId)).map((o) => [o.line, o.lead_id, o.reason])).toEqual([
        [2, lead.id, `duplicate: e-mail matches lead ${lead.id}, stored by ingest run ${first.runId}`],
        [3, lead.id, `duplicate: external id matches lead ${lead.id}, stored by ingest run ${first.runId}`],
      ]);
      const twice = await eraseLead(site.app, { target: { email: 'seven@example.com' }, reason: 'DSR-7' });
      expect(twice).toMatchObject({ kind: 'erased', leads: [{ id: lead.id, alreadyErased: true }] });
    },
  );
});

describe.each(list)('the dedup rule of an installation, on $name', (backend: Backend) => {
  it('is recorded at init, named by system.initialized; another rule is refused at open, naming both and the fix', async () => {
    const site = await installation(backend, 'external_id');
    expect(await getRuntimeValue(site.app.store.db, 'dedup.rule')).toBe('external_id');
    const entries = await site.app.store.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
    expect(entries.map((e) => e.action)).toEqual(['system.initialized']);
    expect(JSON.parse(entries[0]!.details)).toMatchObject({ dedupRule: 'external_id' });

    // The same rule opens; the default (email) does not.
    await site.reopen();
    const refused = await site.reopen({ VALHALLA_DEDUP_KEY: undefined }).then(
      () => null,
      (error: unknown) => error,
    );
    expect(isAppError(refused) && refused.code).toBe('DEDUP_RULE_CHANGED');
    expect((refused as Error).message).toBe(
      'refused: this installation deduplicates by external_id (the dedup rule recorded in its database), but this ' +
        'command runs with email (the default: VALHALLA_DEDUP_KEY is not set). The rule is fixed per installation: ' +
        'leads keyed by another identity would not match the stored ones. Nothing was done. To fix: set ' +
        'VALHALLA_DEDUP_KEY=external_id (in the environment or .env).',
    );
  });
});

describe.each(list)(
  'an installation from before the recorded rule and the identity keys (0013), on $name',
  (backend: Backend) => {
    it('its first start records its rule (audited, logged) and gives stored leads both keys; erased and shared ones as documented', async () => {
      const site = await installation(backend);
      const { app } = site;
      // 1,100 more leads: the fill goes page by page.
      const bulk = Array.from({ length: 1_100 }, (_, i): [string, string] => [
        `BULK-${i}`,
        `bulk${i}@example.com`,
      ]);
      const stored = await site.ingest('old.csv', [
        ['X-1', 'ada@example.com'],
        ['X-2', 'bo@example.com'],
        ['X-3', 'cy@example.com'],
        ...bulk,
      ]);
      expect(stored.accepted).toBe(1_103);
      const ada = await leadByExternalId(app, 'X-1');
      const bo = await leadByExternalId(app, 'X-2');
      const cy = await leadByExternalId(app, 'X-3');
      expect((await eraseLead(app, { target: { email: 'cy@example.com' }, reason: 'DSR-3' })).kind).toBe(
        'erased',
      );
      // What the bug let in before this release: Ada again under another id, keyed by it
      // (VALHALLA_DEDUP_KEY=external_id for that ingest).
      const { id: _id, ...copy } = ada;
      const dee = await app.store.db
        .insertInto('leads')
        .values({
          ...copy,
          attributes: null,
          external_id: 'X-4',
          dedup_key: keyBytes(keys.dedupKey('external_id', 'X-4')),
          source_line: 9_999,
        })
        .returning('id')
        .executeTakeFirstOrThrow();

      // As the release before 0013 left it: no identities, each lead's dedup key the whole keyed hash
      // of its identity (64 hex digits, text, unique), no recorded rule, 0013 to 0015 not applied.
      const db = app.store.db;
      const wholeKeys = new Map<string, string>();
      for (const [externalId, email] of [
        ['X-1', 'ada@example.com'],
        ['X-2', 'bo@example.com'],
        ['X-3', 'cy@example.com'],
        ['X-4', 'ada@example.com'],
        ...bulk,
      ]) {
        for (const identity of [`email:${email}`, `external_id:${externalId}`]) {
          const whole = createHmac('sha256', SECRET).update(identity).digest('hex');
          wholeKeys.set(whole.slice(0, 32), whole);
        }
      }
      await sql`drop table lead_identities`.execute(db);
      if (app.store.dialect === 'postgres') {
        await sql`alter table leads alter column dedup_key type text using encode(dedup_key, 'hex')`.execute(
          db,
        );
        await sql`alter table leads add constraint leads_dedup_key_key unique (dedup_key)`.execute(db);
      }
      const oldLeads = await db.selectFrom('leads').select(['id', 'dedup_key']).execute();
      for (const { id, dedup_key } of oldLeads) {
        const short = typeof dedup_key === 'string' ? dedup_key : keyHex(dedup_key);
        const whole = wholeKeys.get(short);
        if (whole === undefined) throw new Error(`lead ${id}: no identity of the test has the key ${short}`);
        await sql`update leads set dedup_key = ${whole} where id = ${id}`.execute(db);
      }
      await sql`delete from runtime_state where key in ('dedup.rule', 'identity_keys.fill')`.execute(db);
      await sql`delete from valhalla_migration where name = '0013-identity-keys'`.execute(db);
      // Nor the kept counts by state (0014), which came after it.
      await sql`delete from valhalla_migration where name = '0014-lead-state-counts'`.execute(db);
      if (app.store.dialect === 'sqlite') {
        for (const change of ['insert', 'update', 'delete']) {
          await sql.raw(`drop trigger lead_state_counts_${change}`).execute(db);
        }
      } else {
        await sql`drop function valhalla_lead_state_counts_insert, valhalla_lead_state_counts_update, valhalla_lead_state_counts_delete, valhalla_fold_lead_state_counts cascade`.execute(
          db,
        );
      }
      await sql`drop table lead_state_counts`.execute(db);
      await sql`delete from valhalla_migration where name = '0015-lead-identities'`.execute(db);
      // Nor the leads' attributes (0016), which came after it.
      await sql`delete from valhalla_migration where name = '0016-lead-attributes'`.execute(db);
      await sql`alter table leads drop column attributes`.execute(db);
      // Nor the expiry through leads_eligible (0017): the age index it dropped is back.
      await sql`delete from valhalla_migration where name = '0017-expiry-through-eligible'`.execute(db);
      await sql`create index leads_pending_age on leads (source_ts) where state = 'pending'`.execute(db);
      const entriesBefore = await db.selectFrom('audit_log').select('seq').execute();

      // The first command after the upgrade: its rule (the default) is the installation's now.
      const upgraded = await site.reopen();
      const udb = upgraded.store.db;
      // 0014 applied to a store with leads: its counts start from them.
      expect(await countLeadsByState(udb)).toEqual(await scanLeadsByState(udb));
      expect(await getRuntimeValue(udb, 'dedup.rule')).toBe('email');
      expect(await getRuntimeValue(udb, 'identity_keys.fill')).toBe('done');
      const added = await udb
        .selectFrom('audit_log')
        .select(['action', 'details'])
        .where('seq', '>', entriesBefore.length)
        .orderBy('seq')
        .execute();
      expect(added.map((e) => e.action)).toEqual(['dedup.rule_recorded', 'leads.identity_keys_filled']);
      expect(JSON.parse(added[0]!.details)).toMatchObject({
        rule: 'email',
        source: 'the default: VALHALLA_DEDUP_KEY is not set',
      });
      expect(JSON.parse(added[1]!.details)).toMatchObject({
        leads: 1_104,
        // What the stored leads were keyed by: Cy's erased key is of no known kind, the copy's is its id.
        keyedBy: { email: 1_102, external_id: 1, unknown: 1 },
        rule: 'email',
        shared: 1,
        sharedLeads: [{ lead: dee.id, identity: 'email', of: ada.id }],
      });
      const log = readFileSync(site.env.VALHALLA_LOG_FILE!, 'utf8');
      expect(log).toContain('dedup rule recorded for this installation: email');
      expect(log).toContain(
        '1 of the leads stored before this release were keyed by external_id, not by the recorded dedup rule email',
      );

      const keysOf = async (id: number) => ({
        dedup_key: keyHex(
          (await udb.selectFrom('leads').select('dedup_key').where('id', '=', id).executeTakeFirstOrThrow())
            .dedup_key,
        ),
        identities: await identitiesOf(upgraded, id),
      });
      expect(await keysOf(ada.id)).toEqual({
        dedup_key: keys.dedupKey('email', 'ada@example.com'),
        identities: held(keys.dedupKey('email', 'ada@example.com'), keys.dedupKey('external_id', 'X-1')),
      });
      // Erased before: only its dedup key was left, its one identity (domain-separated hashes: it can
      // only ever match the identity it was made from).
      expect(await keysOf(cy.id)).toEqual({ dedup_key: cy.dedup_key, identities: held(cy.dedup_key) });
      // Stored twice before: the earlier lead keeps the e-mail's key.
      expect(await keysOf(dee.id)).toEqual({
        dedup_key: keys.dedupKey('external_id', 'X-4'),
        identities: held(keys.dedupKey('external_id', 'X-4')),
      });
      // Every other lead holds both of its identities.
      const heldBy = await udb
        .selectFrom('lead_identities')
        .select(['lead_id', (eb) => eb.fn.countAll<number>().as('n')])
        .groupBy('lead_id')
        .execute();
      expect(heldBy).toHaveLength(1_104);
      expect(
        heldBy
          .filter((h) => Number(h.n) !== 2)
          .map((h) => Number(h.lead_id))
          .sort((a, b) => a - b),
      ).toEqual([cy.id, dee.id]);

      const after = await site.ingest(
        'new.csv',
        [
          ['X-50', 'ADA@example.com'], // 2: Ada's e-mail
          ['X-4', 'dee@example.com'], // 3: the copy's id
          ['X-2', 'bo.new@example.com'], // 4: Bo's id
          ['X-51', 'cy@example.com'], // 5: erased Cy's e-mail (her primary key)
          ['X-3', 'cy.new@example.com'], // 6: erased Cy's id: gone with her data before 0013
          ['X-53', 'new@example.com'], // 7: new
        ],
        upgraded,
      );
      expect(after).toMatchObject({ accepted: 2, duplicate: 4 });
      expect((await outcomesOf(upgraded, after.runId)).map((o) => [o.line, o.field, o.lead_id])).toEqual([
        [2, 'email', ada.id],
        [3, 'external_id', dee.id],
        [4, 'external_id', bo.id],
        [5, 'email', cy.id],
      ]);

      // Recorded now: a command with another rule is refused.
      const refused = await site.reopen({ VALHALLA_DEDUP_KEY: 'external_id' }).then(
        () => null,
        (error: unknown) => error,
      );
      expect(isAppError(refused) && refused.code).toBe('DEDUP_RULE_CHANGED');
      expect((refused as Error).message).toContain(
        'but this command runs with external_id (VALHALLA_DEDUP_KEY from the environment)',
      );
      expect((refused as Error).message).toContain(
        'To fix: unset VALHALLA_DEDUP_KEY (email is the default) or set it to email.',
      );
      expect((await upgraded.audit.verify()).ok).toBe(true);
    });
  },
);
