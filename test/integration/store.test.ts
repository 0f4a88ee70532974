import { createHmac } from 'node:crypto';
import { CompiledQuery, type Kysely, sql } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { leadKey } from '../../src/engine/index.js';
import { createPseudonymizer } from '../../src/pii/index.js';
import { LEAD_STATES } from '../../src/policy/index.js';
import {
  countLeadsByState,
  createIngestRun,
  expireStalePending,
  getRuntimeValue,
  insertLeadsSkippingDuplicates,
  insertNewLeadsInBulk,
  isStoreError,
  listLeads,
  migrateToLatest,
  type NewLead,
  openStore,
  readConsistently,
  type Store,
  type StoreTarget,
  scanLeadsByState,
  setRuntimeValue,
} from '../../src/store/index.js';
import {
  attributesColumn,
  identityBytes,
  identityHex,
  keyBytes,
  keyHex,
  leadFromRow,
} from '../../src/store/leads.js';
import { migrations } from '../../src/store/migrations/index.js';
import { expiryStatement } from '../../src/store/outbox.js';
import { backends, dropTestSchemas, sqliteBackend } from '../support/backends.js';
import { testKey } from '../support/keys.js';
import { HOUR, NOW } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);

const TABLES = [
  'alert_deliveries',
  'alerts',
  'audit_log',
  'cycles',
  'daily_usage',
  'deliveries',
  'delivery_leads',
  'heartbeats',
  'ingest_outcomes',
  'ingest_runs',
  'lead_identities',
  'lead_state_counts',
  'leads',
  'mode_acks',
  'rate_starts',
  'requests',
  'runner_lease',
  'runtime_state',
  'signatures',
  'signers',
  'valhalla_migration',
];

/** The tables of the store's own database (SQLite file, or the PostgreSQL schema it was opened on). */
async function tableNames(store: Store): Promise<string[]> {
  const query =
    store.dialect === 'sqlite'
      ? sql<{
          name: string;
        }>`select name from sqlite_master where type = 'table' and name not like 'sqlite_%'`
      : sql<{
          name: string;
        }>`select table_name as name from information_schema.tables where table_schema = current_schema()`;
  const { rows } = await query.execute(store.db);
  return rows.map((r) => r.name).sort();
}

/** The indexes on `leads` (SQLite file, or the PostgreSQL schema the store was opened on). */
async function indexNames(store: Store): Promise<string[]> {
  const query =
    store.dialect === 'sqlite'
      ? sql<{ name: string }>`select name from sqlite_master where type = 'index' and tbl_name = 'leads'`
      : sql<{
          name: string;
        }>`select indexname as name from pg_indexes where schemaname = current_schema() and tablename = 'leads'`;
  const { rows } = await query.execute(store.db);
  return rows.map((r) => r.name).sort();
}

async function appliedMigrations(store: Store): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select name from valhalla_migration order by name`.execute(
    store.db,
  );
  return rows.map((r) => r.name);
}

/**
 * Make `store` (opened without migrating, empty) a database as a release before the migration
 * `before` left it: every migration before that one applied in one transaction and recorded, as the
 * runner did.
 */
async function migratedBefore(store: Store, before: string): Promise<Store> {
  const all = migrations(store.dialect);
  await store.db.transaction().execute(async (trx) => {
    await sql`create table valhalla_migration (name varchar(255) not null primary key, timestamp varchar(255) not null)`.execute(
      trx,
    );
    for (const name of Object.keys(all)
      .sort()
      .filter((n) => n < before)) {
      await all[name]!.up(trx);
      await sql`insert into valhalla_migration (name, timestamp) values (${name}, ${new Date(NOW).toISOString()})`.execute(
        trx,
      );
    }
  });
  return store;
}

const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';

/** A lead named `name`: its e-mail's key (`testKey(name)`) is its dedup key; no external id. */
function lead(runId: number, name: string, overrides: Partial<NewLead> = {}): NewLead {
  return {
    dedup_key: testKey(name),
    email_key: testKey(name),
    external_id_key: null,
    external_id: null,
    name: 'Test Person',
    email: `${name}@example.test`,
    phone: null,
    company: null,
    score: 50,
    source_ts: NOW - HOUR,
    value: null,
    state: 'pending',
    state_reason: null,
    ingested_at: NOW,
    updated_at: NOW,
    exported_at: null,
    run_id: runId,
    source_line: 1,
    ...overrides,
  };
}

/** A new lead as the `leads` table takes it: without its identity keys, its dedup key as bytes. */
function leadsRow({ email_key: _e, external_id_key: _x, ...row }: NewLead) {
  return { ...row, dedup_key: keyBytes(row.dedup_key), attributes: attributesColumn(row.attributes) };
}

/** The dedup keys of selected rows in hex, as the store functions return them. */
function hexKeys<T extends { dedup_key: Uint8Array }>(rows: T[]) {
  return rows.map(leadFromRow);
}

/** Every identity `lead_identities` holds, as [its 24 hex digits, its lead's id], in key order. */
async function heldIdentities(store: Store): Promise<[string, number | undefined][]> {
  const held = await store.db.selectFrom('lead_identities').select(['key', 'lead_id']).execute();
  return byKey(held.map((h) => [keyHex(h.key), Number(h.lead_id)]));
}

/** Identity keys (32 hex digits) and their leads as `heldIdentities` reads them (src/store/leads.ts keeps 12 bytes). */
function asHeld(rows: [string, number | undefined][]): [string, number | undefined][] {
  return byKey(rows.map(([key, id]): [string, number | undefined] => [identityHex(key), id]));
}

function byKey(rows: [string, number | undefined][]): [string, number | undefined][] {
  return rows.sort((a, b) => a[0].localeCompare(b[0]));
}

describe.each(list)('store on $name', (backend) => {
  const opened: Store[] = [];
  async function open(
    target: StoreTarget = backend.target(),
    options: { migrate?: boolean } = {},
  ): Promise<Store> {
    const store = await openStore(target, options);
    opened.push(store);
    return store;
  }
  afterEach(async () => {
    for (const store of opened.splice(0).reverse()) await store.close();
  });

  async function openMigratedBefore(target: StoreTarget, before: string): Promise<Store> {
    return migratedBefore(await open(target, { migrate: false }), before);
  }

  async function withRun(store: Store): Promise<number> {
    return createIngestRun(store.db, { startedAt: NOW, source: 'test.csv', format: 'csv', operator: 'test' });
  }

  it('migrates a fresh database: every table exists and every known migration is recorded', async () => {
    const store = await open();
    expect(store.dialect).toBe(backend.name);
    expect(await tableNames(store)).toEqual(TABLES);
    expect(await appliedMigrations(store)).toEqual(Object.keys(migrations(store.dialect)).sort());
  });

  it('opening a migrated database again changes nothing and keeps its data', async () => {
    const target = backend.target();
    const first = await open(target, { migrate: false });
    expect(await migrateToLatest(first)).toEqual(Object.keys(migrations(first.dialect)));
    const runId = await withRun(first);
    await insertLeadsSkippingDuplicates(first, [lead(runId, 'kept')]);
    const before = await sql<{
      name: string;
      timestamp: string;
    }>`select name, timestamp from valhalla_migration`.execute(first.db);
    await first.close();

    const second = await open(target);
    expect(await migrateToLatest(second)).toEqual([]);
    const after = await sql<{
      name: string;
      timestamp: string;
    }>`select name, timestamp from valhalla_migration`.execute(second.db);
    expect(after.rows).toEqual(before.rows);
    const leads = await second.db.selectFrom('leads').select('dedup_key').execute();
    expect(hexKeys(leads)).toEqual([{ dedup_key: testKey('kept') }]);
  });

  it('migrates a second database beside an existing one on its own', async () => {
    // On PostgreSQL both live in one database, in two schemas: the second must not mistake the
    // first one's migration table for its own.
    const first = await open();
    const second = await open();
    expect(await tableNames(second)).toEqual(TABLES);
    await withRun(second);
    expect(await first.db.selectFrom('ingest_runs').selectAll().execute()).toEqual([]);
  });

  it('close() can be called twice, and the store is closed after it', async () => {
    const store = await openStore(backend.target());
    await store.close();
    await expect(store.close()).resolves.toBeUndefined();
    await expect(store.db.selectFrom('leads').selectAll().execute()).rejects.toThrow();
  });

  it('refuses a database migrated by a newer release (SCHEMA_TOO_NEW)', async () => {
    const target = backend.target();
    const store = await open(target);
    await sql`insert into valhalla_migration (name, timestamp) values ('9999-from-the-future', ${new Date(NOW).toISOString()})`.execute(
      store.db,
    );
    await store.close();

    const refusal = await openStore(target).then(
      () => null,
      (error: unknown) => error,
    );
    expect(isStoreError(refusal)).toBe(true);
    expect(refusal).toMatchObject({ name: 'StoreError', code: 'SCHEMA_TOO_NEW' });
    expect((refusal as Error).message).toContain('9999-from-the-future');
  });

  it('an identity key is unique in the database itself: a raw second INSERT of it fails', async () => {
    const store = await open();
    const runId = await withRun(store);
    const ids = await insertLeadsSkippingDuplicates(store, [lead(runId, 'first'), lead(runId, 'second')]);
    const insert = (leadId: number) =>
      sql`insert into lead_identities (key, lead_id) values (${identityBytes(testKey('same-key'))}, ${leadId})`.execute(
        store.db,
      );
    await insert(ids.get(testKey('first'))!);
    await expect(insert(ids.get(testKey('second'))!)).rejects.toThrow(/unique|duplicate key/i);
    // Nor can the key a lead holds be given to another.
    await expect(
      sql`insert into lead_identities (key, lead_id) values (${identityBytes(testKey('first'))}, ${ids.get(testKey('second'))!})`.execute(
        store.db,
      ),
    ).rejects.toThrow(/unique|duplicate key/i);
    const held = await store.db.selectFrom('lead_identities').select(['key', 'lead_id']).execute();
    expect(
      held
        .map((h) => [keyHex(h.key), Number(h.lead_id)])
        .sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
    ).toEqual(
      [
        [identityHex(testKey('first')), ids.get(testKey('first'))],
        [identityHex(testKey('second')), ids.get(testKey('second'))],
        [identityHex(testKey('same-key')), ids.get(testKey('first'))],
      ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
    );
  });

  it('insertLeadsSkippingDuplicates returns only the inserted keys, duplicates within the batch included', async () => {
    const store = await open();
    const runId = await withRun(store);
    const stored = await insertLeadsSkippingDuplicates(store, [lead(runId, 'b', { score: 41 })]);
    expect([...stored.keys()]).toEqual([testKey('b')]);

    const inserted = await insertLeadsSkippingDuplicates(store, [
      lead(runId, 'a', { score: 60, source_line: 2 }),
      lead(runId, 'b', { score: 99, source_line: 3 }),
      lead(runId, 'a', { score: 70, source_line: 4 }),
      lead(runId, 'c', { score: 80, source_line: 5 }),
    ]);
    expect([...inserted.keys()].sort()).toEqual([testKey('a'), testKey('c')].sort());
    const rows = hexKeys(
      await store.db
        .selectFrom('leads')
        .select(['id', 'dedup_key', 'score', 'source_line'])
        .orderBy('source_line')
        .execute(),
    );
    // The first row of a repeated key is the one stored; the stored lead b is untouched.
    expect(rows.map(({ dedup_key, score, source_line }) => ({ dedup_key, score, source_line }))).toEqual([
      { dedup_key: testKey('b'), score: 41, source_line: 1 },
      { dedup_key: testKey('a'), score: 60, source_line: 2 },
      { dedup_key: testKey('c'), score: 80, source_line: 5 },
    ]);
    for (const row of rows.filter((r) => r.dedup_key !== testKey('b')))
      expect(inserted.get(row.dedup_key)).toBe(row.id);
  });

  it('insertLeadsSkippingDuplicates skips a duplicate that falls in a later statement of a large batch', async () => {
    const store = await open();
    const runId = await withRun(store);
    const rows = Array.from({ length: 1_500 }, (_, i) => lead(runId, `k${i}`, { source_line: i + 1 }));
    rows[1_200] = lead(runId, 'k5', { source_line: 1_201, score: 90 });
    const inserted = await insertLeadsSkippingDuplicates(store, rows);
    expect(inserted.size).toBe(1_499);
    expect(inserted.has(testKey('k1200'))).toBe(false);
    const count = await store.db
      .selectFrom('leads')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(1_499);
    const k5 = await store.db
      .selectFrom('leads')
      .select('score')
      .where('dedup_key', '=', keyBytes(testKey('k5')))
      .executeTakeFirstOrThrow();
    expect(k5.score).toBe(50);
  });

  it('a score can change before export, and never after (database trigger)', async () => {
    const store = await open();
    const runId = await withRun(store);
    const id = (await insertLeadsSkippingDuplicates(store, [lead(runId, 'x', { score: 50 })])).get(
      testKey('x'),
    )!;
    const setScore = (score: number) =>
      store.db.updateTable('leads').set({ score }).where('id', '=', id).execute();
    const score = async () =>
      (await store.db.selectFrom('leads').select('score').where('id', '=', id).executeTakeFirstOrThrow())
        .score;

    await setScore(60);
    expect(await score()).toBe(60);

    await store.db
      .updateTable('leads')
      .set({ state: 'exported', exported_at: NOW })
      .where('id', '=', id)
      .execute();
    await expect(setScore(70)).rejects.toThrow(/score cannot change/);
    await expect(
      sql`update leads set score = score + 1, updated_at = ${NOW + 1} where id = ${id}`.execute(store.db),
    ).rejects.toThrow(/score cannot change/);
    expect(await score()).toBe(60);

    // The trigger guards the score only: other columns of an exported lead still change.
    await store.db
      .updateTable('leads')
      .set({ state: 'archived', updated_at: NOW + 2 })
      .where('id', '=', id)
      .execute();
    const after = await store.db
      .selectFrom('leads')
      .select(['state', 'score'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    expect(after).toEqual({ state: 'archived', score: 60 });
  });

  it('an exported lead cannot be marked as not exported', async () => {
    const store = await open();
    const runId = await withRun(store);
    const id = (await insertLeadsSkippingDuplicates(store, [lead(runId, 'y')])).get(testKey('y'))!;
    await store.db.updateTable('leads').set({ exported_at: NOW }).where('id', '=', id).execute();
    await expect(
      store.db.updateTable('leads').set({ exported_at: null }).where('id', '=', id).execute(),
    ).rejects.toThrow(/cannot be marked as not exported/);
    const row = await store.db
      .selectFrom('leads')
      .select('exported_at')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    expect(row.exported_at).toBe(NOW);
  });

  it('an exported lead cannot be deleted, while a lead not yet exported can', async () => {
    const store = await open();
    const runId = await withRun(store);
    const inserted = await insertLeadsSkippingDuplicates(store, [lead(runId, 'sent'), lead(runId, 'unsent')]);
    const ids = new Map(['sent', 'unsent'].map((name) => [name, inserted.get(testKey(name))!]));
    // Their identities out of the way (they point at the leads): what refuses is the trigger alone.
    await store.db.deleteFrom('lead_identities').execute();
    await store.db
      .updateTable('leads')
      .set({ state: 'exported', exported_at: NOW })
      .where('id', '=', ids.get('sent')!)
      .execute();
    await expect(store.db.deleteFrom('leads').where('id', '=', ids.get('sent')!).execute()).rejects.toThrow(
      /exported lead cannot be deleted/,
    );
    await store.db.deleteFrom('leads').where('id', '=', ids.get('unsent')!).execute();
    const left = await store.db.selectFrom('leads').select(['dedup_key', 'exported_at']).execute();
    expect(hexKeys(left)).toEqual([{ dedup_key: testKey('sent'), exported_at: NOW }]);
    if (store.dialect === 'postgres') {
      await expect(sql`truncate leads cascade`.execute(store.db)).rejects.toThrow(
        /exported lead cannot be deleted/,
      );
    } else {
      // INSERT OR REPLACE deletes the row it collides with (its id): the delete trigger must still refuse it.
      const row = { id: ids.get('sent')!, ...leadsRow(lead(runId, 'sent', { score: 99 })) };
      const columns = Object.keys(row);
      expect(() =>
        store
          .sqlite!.prepare(
            `insert or replace into leads (${columns.join(', ')}) values (${columns.map((c) => `@${c}`).join(', ')})`,
          )
          .run(row),
      ).toThrow(/exported lead cannot be deleted/);
    }
    const kept = await store.db
      .selectFrom('leads')
      .select(['score', 'exported_at'])
      .executeTakeFirstOrThrow();
    expect(kept).toEqual({ score: 50, exported_at: NOW });
  });

  it.each([
    ['an unknown state', { state: 'sent' }],
    ['the rejected state (rows, not leads)', { state: 'rejected' }],
    ['a score above 100', { score: 101 }],
    ['a negative score', { score: -1 }],
  ])('CHECK constraints refuse %s, on insert and on update', async (_what, bad) => {
    const store = await open();
    const runId = await withRun(store);
    await expect(
      store.db
        .insertInto('leads')
        .values(leadsRow(lead(runId, 'bad', bad as Partial<NewLead>)))
        .execute(),
    ).rejects.toThrow(/check constraint/i);
    const id = (await insertLeadsSkippingDuplicates(store, [lead(runId, 'good')])).get(testKey('good'))!;
    await expect(
      store.db
        .updateTable('leads')
        .set(bad as Partial<Pick<NewLead, 'state' | 'score'>>)
        .where('id', '=', id)
        .execute(),
    ).rejects.toThrow(/check constraint/i);
    const row = await store.db.selectFrom('leads').select(['dedup_key', 'state', 'score']).execute();
    expect(hexKeys(row)).toEqual([{ dedup_key: testKey('good'), state: 'pending', score: 50 }]);
  });

  it('CHECK constraints accept the bounds 0 and 100 and every lead state', async () => {
    const store = await open();
    const runId = await withRun(store);
    const states = LEAD_STATES;
    const rows = [
      lead(runId, 'zero', { score: 0, state: 'below_threshold' }),
      lead(runId, 'hundred', { score: 100 }),
      ...states.map((state) => lead(runId, `state-${state}`, { state })),
    ];
    expect((await insertLeadsSkippingDuplicates(store, rows)).size).toBe(rows.length);
  });

  it('both insert paths store a lead given without its synthetic mark as real (0), and a marked one as synthetic', async () => {
    const store = await open();
    const runId = await withRun(store);
    await insertLeadsSkippingDuplicates(store, [
      lead(runId, 'plain'),
      lead(runId, 'marked', { synthetic: 1 }),
    ]);
    await store.db
      .transaction()
      .execute((trx) =>
        insertNewLeadsInBulk(store, trx, [
          lead(runId, 'bulk-plain'),
          lead(runId, 'bulk-marked', { synthetic: 1 }),
        ]),
      );
    const rows = await store.db.selectFrom('leads').select(['email', 'synthetic']).orderBy('id').execute();
    expect(rows.map((r) => [r.email, Number(r.synthetic)])).toEqual([
      ['plain@example.test', 0],
      ['marked@example.test', 1],
      ['bulk-plain@example.test', 0],
      ['bulk-marked@example.test', 1],
    ]);
  });

  it.each([
    [
      'insertLeadsSkippingDuplicates',
      async (store: Store, rows: NewLead[]) => [...(await insertLeadsSkippingDuplicates(store, rows)).keys()],
    ],
    [
      'insertNewLeadsInBulk',
      async (store: Store, rows: NewLead[]) =>
        (await store.db.transaction().execute((trx) => insertNewLeadsInBulk(store, trx, rows))).map(
          (r) => r.dedup_key,
        ),
    ],
  ])(
    '%s skips a lead whose e-mail key OR external id key is held, stored or earlier in the batch',
    async (_name, insert) => {
      const store = await open();
      const runId = await withRun(store);
      const E = (name: string) => testKey(`email:${name}`);
      const X = (id: string) => testKey(`external_id:${id}`);
      const person = (line: number, email: string, externalId: string | null, byExternalId = false) =>
        lead(runId, email, {
          dedup_key: byExternalId && externalId !== null ? X(externalId) : E(email),
          email_key: E(email),
          external_id_key: externalId === null ? null : X(externalId),
          external_id: externalId,
          source_line: line,
          // Ingest always sets it; the bulk insert binds every column, a default included.
          synthetic: 0,
        });
      expect(await insert(store, [person(1, 'ada', '1')])).toEqual([E('ada')]);

      const inserted = await insert(store, [
        person(2, 'ada', '9'), // Ada's e-mail, a new id: skipped
        person(3, 'ada2', '1'), // a new e-mail, Ada's id: skipped
        person(4, 'eve', null), // new: stored
        person(5, 'eve', '5'), // line 4's e-mail: skipped
        person(6, 'fay', '6', true), // new (keyed by its id): stored
        person(7, 'gus', '6'), // line 6's id: skipped
        person(8, 'hal', '9'), // new: line 2's id was never stored, as line 2 was not
      ]);
      expect(inserted.sort()).toEqual([E('eve'), X('6'), E('hal')].sort());

      const leads = hexKeys(
        await store.db.selectFrom('leads').select(['id', 'dedup_key', 'source_line']).orderBy('id').execute(),
      );
      expect(leads.map((l) => [l.source_line, l.dedup_key])).toEqual([
        [1, E('ada')],
        [4, E('eve')],
        [6, X('6')],
        [8, E('hal')],
      ]);
      const idOfLine = new Map(leads.map((l) => [l.source_line, Number(l.id)]));
      // Each stored lead holds its identities; a skipped lead holds none, not even its new one.
      expect(await heldIdentities(store)).toEqual(
        asHeld([
          [E('ada'), idOfLine.get(1)],
          [X('1'), idOfLine.get(1)],
          [E('eve'), idOfLine.get(4)],
          [E('fay'), idOfLine.get(6)],
          [X('6'), idOfLine.get(6)],
          [E('hal'), idOfLine.get(8)],
          [X('9'), idOfLine.get(8)],
        ]),
      );
      expect(await countLeadsByState(store.db)).toEqual(await scanLeadsByState(store.db));
    },
  );

  it('keyBytes refuses a key that is not 32 lowercase hex digits, and a lead with one is not stored', async () => {
    const good = testKey('good');
    expect(keyHex(keyBytes(good))).toBe(good);
    expect(keyBytes(good)).toHaveLength(16);
    for (const bad of [
      'k5',
      '',
      'ABCDEF0123456789ABCDEF0123456789', // upper case
      good.slice(1), // 31 digits
      `${good}0`, // 33
      `${good}${good}`, // the 64 digits of a key before 0015
      `${good.slice(0, 31)}g`,
      ` ${good.slice(1)}`,
    ]) {
      expect(() => keyBytes(bad), bad).toThrow(/32 lowercase hex digits/);
    }

    const store = await open();
    const runId = await withRun(store);
    for (const bad of [
      { dedup_key: 'k5' },
      { email_key: 'k5' },
      { external_id_key: `${good}${good}` },
    ] satisfies Partial<NewLead>[]) {
      await expect(
        insertLeadsSkippingDuplicates(store, [lead(runId, 'fine'), lead(runId, 'bad', bad)]),
        JSON.stringify(bad),
      ).rejects.toThrow(/32 lowercase hex digits/);
    }
    // Nothing of the batch was stored: not the good lead before it, not an identity.
    expect(await store.db.selectFrom('leads').select('id').execute()).toEqual([]);
    expect(await store.db.selectFrom('lead_identities').select('key').execute()).toEqual([]);
  });

  it('a database migrated before 0015 keeps its leads, their pseudonyms, lead keys and identities', async () => {
    const target = backend.target();
    const old = await openMigratedBefore(target, '0015-lead-identities');
    const runId = await withRun(old);
    /** A key as releases before 0015 stored it: the whole keyed hash, 64 hex digits. */
    const oldKey = (identity: string) => createHmac('sha256', SECRET).update(identity).digest('hex');
    const base = lead(runId, 'unused');
    const { email_key: _e, external_id_key: _x, dedup_key: _d, ...columns } = base;
    const oldLeads = [
      // Ada: both identities keyed (0013), her e-mail the dedup key.
      {
        ...columns,
        name: 'Ada',
        email: 'ada@example.test',
        external_id: 'X-1',
        dedup_key: oldKey('email:ada@example.test'),
        email_key: oldKey('email:ada@example.test'),
        external_id_key: oldKey('external_id:X-1'),
        source_line: 2,
      },
      // Bo: no external id; exported.
      {
        ...columns,
        name: 'Bo',
        email: 'bo@example.test',
        dedup_key: oldKey('email:bo@example.test'),
        email_key: oldKey('email:bo@example.test'),
        external_id_key: null,
        state: 'exported' as const,
        exported_at: NOW,
        source_line: 3,
      },
      // Cy: erased, her keys kept.
      {
        ...columns,
        name: '(erased)',
        email: '(erased)',
        dedup_key: oldKey('email:cy@example.test'),
        email_key: oldKey('email:cy@example.test'),
        external_id_key: oldKey('external_id:X-3'),
        state: 'archived' as const,
        erased_at: NOW,
        source_line: 4,
      },
      // Dee: stored before 0013 and never filled (no secret since), keyed by her external id.
      {
        ...columns,
        name: 'Dee',
        email: 'dee@example.test',
        external_id: 'X-4',
        dedup_key: oldKey('external_id:X-4'),
        email_key: null,
        external_id_key: null,
        source_line: 5,
      },
    ];
    const untyped = old.db as unknown as Kysely<{ leads: Record<string, unknown> }>;
    const ids: number[] = [];
    for (const row of oldLeads) {
      ids.push(
        Number((await untyped.insertInto('leads').values(row).returning('id').executeTakeFirstOrThrow()).id),
      );
    }
    await old.close();

    const store = await open(target, { migrate: false });
    expect(await migrateToLatest(store)).toEqual([
      '0015-lead-identities',
      '0016-lead-attributes',
      '0017-expiry-through-eligible',
    ]);
    const leads = (await store.db.selectFrom('leads').selectAll().orderBy('id').execute()).map(leadFromRow);
    // Every lead, every column as it was; the dedup key its first 16 bytes.
    expect(leads).toEqual(
      oldLeads.map(({ email_key: _ek, external_id_key: _xk, ...row }, i) => ({
        ...row,
        id: ids[i],
        dedup_key: row.dedup_key.slice(0, 32),
        external_id: row.external_id ?? null,
        dry_run_at: null,
        erased_at: row.erased_at ?? null,
        synthetic: 0,
        attributes: null,
      })),
    );
    const pseudonyms = createPseudonymizer(SECRET);
    for (const [i, l] of leads.entries()) {
      // The pseudonym (the audit chain's, the logs') and the partner's lead key are the ones sent before.
      expect(pseudonyms.pseudonym(l.dedup_key)).toBe(`L-${oldLeads[i]!.dedup_key.slice(0, 20)}`);
      expect(leadKey(l)).toBe(`lk_${oldLeads[i]!.dedup_key.slice(0, 32)}`);
    }
    // And the key this release makes of the same identity is the stored one.
    expect(leads[0]!.dedup_key).toBe(pseudonyms.dedupKey('email', 'ada@example.test'));

    // The identities: each key that was held, its lead's; Dee's are filled at the next start with the secret.
    expect(await heldIdentities(store)).toEqual(
      asHeld([
        [pseudonyms.dedupKey('email', 'ada@example.test'), ids[0]],
        [pseudonyms.dedupKey('external_id', 'X-1'), ids[0]],
        [pseudonyms.dedupKey('email', 'bo@example.test'), ids[1]],
        [pseudonyms.dedupKey('email', 'cy@example.test'), ids[2]],
        [pseudonyms.dedupKey('external_id', 'X-3'), ids[2]],
      ]),
    );

    // They keep the people out: Ada's e-mail, erased Cy's id. A new person is stored after the old ids.
    const newLead = (name: string, email: string, externalId: string) =>
      lead(runId, name, {
        dedup_key: pseudonyms.dedupKey('email', email),
        email_key: pseudonyms.dedupKey('email', email),
        external_id_key: pseudonyms.dedupKey('external_id', externalId),
        external_id: externalId,
      });
    const inserted = await insertLeadsSkippingDuplicates(store, [
      newLead('ada-again', 'ada@example.test', 'X-10'),
      newLead('cy-again', 'cy.new@example.test', 'X-3'),
      newLead('new', 'new@example.test', 'X-11'),
    ]);
    expect([...inserted.keys()]).toEqual([pseudonyms.dedupKey('email', 'new@example.test')]);
    expect([...inserted.values()][0]).toBeGreaterThan(ids.at(-1)!);

    // What guarded the leads still does (SQLite rebuilt the table): the counts by state, the exported
    // lead's score and row, the erased lead's erasure.
    expect(await countLeadsByState(store.db)).toEqual(await scanLeadsByState(store.db));
    await expect(
      store.db.updateTable('leads').set({ score: 1 }).where('id', '=', ids[1]!).execute(),
    ).rejects.toThrow(/score cannot change/);
    await expect(
      store.db.updateTable('leads').set({ erased_at: null }).where('id', '=', ids[2]!).execute(),
    ).rejects.toThrow(/stays erased/);
    await expect(
      store.db.updateTable('leads').set({ email: 'cy@example.test' }).where('id', '=', ids[2]!).execute(),
    ).rejects.toThrow(/holds no personal data/);
    await store.db.deleteFrom('lead_identities').where('lead_id', '=', ids[1]!).execute();
    await expect(store.db.deleteFrom('leads').where('id', '=', ids[1]!).execute()).rejects.toThrow(
      /exported lead cannot be deleted/,
    );
    if (store.dialect === 'sqlite') {
      expect(store.sqlite!.pragma('foreign_key_check')).toEqual([]);
      expect(store.sqlite!.pragma('foreign_keys', { simple: true })).toBe(1);
    }
  });

  it("both insert paths store a lead's attributes as JSON, and NULL for a lead without any; broken JSON reads as null", async () => {
    const store = await open();
    const runId = await withRun(store);
    const attributes = { title: 'Head of Sales', country: 'DE', seats: 12, consent: true, note: null };
    await insertLeadsSkippingDuplicates(store, [
      lead(runId, 'with', { attributes }),
      lead(runId, 'without'),
      lead(runId, 'nulled', { attributes: null }),
    ]);
    await store.db
      .transaction()
      .execute((trx) =>
        insertNewLeadsInBulk(store, trx, [
          lead(runId, 'bulk-with', { attributes: { title: 'CTO' } }),
          lead(runId, 'bulk-without'),
        ]),
      );
    const raw = await store.db.selectFrom('leads').select(['email', 'attributes']).orderBy('id').execute();
    expect(raw.map((r) => [r.email, r.attributes === null ? null : JSON.parse(r.attributes)])).toEqual([
      ['with@example.test', attributes],
      ['without@example.test', null],
      ['nulled@example.test', null],
      ['bulk-with@example.test', { title: 'CTO' }],
      ['bulk-without@example.test', null],
    ]);
    expect((await listLeads(store.db, { limit: 10 })).map((l) => [l.email, l.attributes])).toEqual([
      ['bulk-without@example.test', null],
      ['bulk-with@example.test', { title: 'CTO' }],
      ['nulled@example.test', null],
      ['without@example.test', null],
      ['with@example.test', attributes],
    ]);

    // What no release writes (a hand edit, a cut write): read as a lead without attributes, no crash.
    for (const broken of ['{"title": "Head', '["a"]', '"text"', '{"nested": {"a": 1}}', '42']) {
      await store.db
        .updateTable('leads')
        .set({ attributes: broken })
        .where('email', '=', 'with@example.test')
        .execute();
      const read = (await listLeads(store.db, { limit: 10 })).find((l) => l.email === 'with@example.test');
      expect(read?.attributes, broken).toBeNull();
    }
  });

  it('0016 adds leads.attributes to a database with leads: each reads null, every other column as it was', async () => {
    const target = backend.target();
    const old = await openMigratedBefore(target, '0016-lead-attributes');
    const runId = await withRun(old);
    // Inserted as a release before 0016 did: without the column.
    const untyped = old.db as unknown as Kysely<{ leads: Record<string, unknown> }>;
    for (const row of [
      lead(runId, 'kept', { phone: '4930123456', company: 'Example GmbH', value: 12.5, source_line: 2 }),
      lead(runId, 'exported', { state: 'exported', exported_at: NOW, source_line: 3 }),
    ]) {
      const { attributes: _a, ...columns } = leadsRow(row);
      await untyped.insertInto('leads').values(columns).execute();
    }
    const before = await old.db.selectFrom('leads').selectAll().orderBy('id').execute();
    const countsBefore = await countLeadsByState(old.db);
    await old.close();

    const store = await open(target, { migrate: false });
    expect(await migrateToLatest(store)).toEqual(['0016-lead-attributes', '0017-expiry-through-eligible']);
    const after = await store.db.selectFrom('leads').selectAll().orderBy('id').execute();
    expect(after).toEqual(before.map((row) => ({ ...row, attributes: null })));
    expect(after.map((r) => Object.keys(r).length)).toEqual(before.map((r) => Object.keys(r).length + 1));
    expect(await countLeadsByState(store.db)).toEqual(countsBefore);
    // What guarded the leads still does: the exported lead's score.
    await expect(
      store.db.updateTable('leads').set({ score: 1 }).where('id', '=', after[1]!.id).execute(),
    ).rejects.toThrow(/score cannot change/);
    // And a lead stored now keeps its attributes.
    await insertLeadsSkippingDuplicates(store, [lead(runId, 'new', { attributes: { country: 'FR' } })]);
    const stored = await listLeads(store.db, { limit: 1 });
    expect(stored[0]?.attributes).toEqual({ country: 'FR' });
  });

  it('0017: stale pending leads are found through leads_eligible, a range of ages for each score, and leads_pending_age is gone', async () => {
    const target = backend.target();
    const old = await openMigratedBefore(target, '0017-expiry-through-eligible');
    expect(await indexNames(old)).toContain('leads_pending_age');
    await old.close();
    const store = await open(target, { migrate: false });
    expect(await migrateToLatest(store)).toEqual(['0017-expiry-through-eligible']);
    expect(await indexNames(store)).not.toContain('leads_pending_age');
    expect(await indexNames(store)).toContain('leads_eligible');

    const runId = await withRun(store);
    const stale = NOW - 20 * 24 * HOUR;
    const cutoff = NOW - 14 * 24 * HOUR;
    const ids = await insertLeadsSkippingDuplicates(store, [
      // Stale and pending at the bounds of the score and in between: each one expires.
      lead(runId, 'stale-0', { score: 0, source_ts: stale, source_line: 2 }),
      lead(runId, 'stale-57', { score: 57, source_ts: stale, source_line: 3 }),
      lead(runId, 'stale-100', { score: 100, source_ts: cutoff - 1, source_line: 4 }),
      // Fresh (the cutoff itself included), or not pending: none of them does.
      lead(runId, 'fresh', { score: 90, source_ts: cutoff, source_line: 5 }),
      lead(runId, 'exported', { state: 'exported', exported_at: NOW, source_ts: stale, source_line: 6 }),
      lead(runId, 'below', { state: 'below_threshold', score: 10, source_ts: stale, source_line: 7 }),
    ]);
    const expired = await expireStalePending(store.db, cutoff, NOW, 'stale');
    expect(expired.sort((a, b) => a - b)).toEqual(
      ['stale-0', 'stale-57', 'stale-100'].map((name) => ids.get(testKey(name))),
    );
    expect(await countLeadsByState(store.db)).toEqual({
      expired: 3,
      pending: 1,
      exported: 1,
      below_threshold: 1,
    });

    // The plan reads leads_eligible by score and age, never every pending lead. PostgreSQL plans a few
    // rows as a scan of the table: told not to, it shows the index can serve the statement.
    const compiled = expiryStatement(store.db, cutoff, NOW, 'stale').compile();
    const plan = await store.db.transaction().execute(async (trx) => {
      if (store.dialect === 'postgres') await sql`set local enable_seqscan = off`.execute(trx);
      const explain = store.dialect === 'sqlite' ? 'explain query plan ' : 'explain ';
      const rows = await trx.executeQuery(
        CompiledQuery.raw(explain + compiled.sql, [...compiled.parameters]),
      );
      return (rows.rows as Record<string, unknown>[])
        .map((r) => String(r.detail ?? r['QUERY PLAN']))
        .join('\n');
    });
    if (store.dialect === 'sqlite') {
      expect(plan).toMatch(
        /SEARCH leads USING (COVERING )?INDEX leads_eligible \(score=\? AND source_ts<\?\)/,
      );
    } else {
      expect(plan).toMatch(/leads_eligible/);
      expect(plan).toMatch(/Index Cond: \(\(score = ANY .*source_ts < /);
    }
  });

  it('readConsistently: every read inside sees one snapshot, whatever another process commits meanwhile', async () => {
    const target = backend.target();
    const reader = await open(target);
    const writer = await open(target);
    await setRuntimeValue(writer.db, 'mode_probe', 'live', NOW);
    await setRuntimeValue(writer.db, 'rate_probe', '0', NOW);
    const seen = await readConsistently(reader, async (trx) => {
      const first = await getRuntimeValue(trx, 'rate_probe');
      // Another connection commits between the two reads (a rollback and the request behind it).
      await writer.db.transaction().execute(async (w) => {
        await setRuntimeValue(w, 'rate_probe', '1', NOW + 1);
        await setRuntimeValue(w, 'mode_probe', 'rolled_back', NOW + 1);
      });
      return { first, mode: await getRuntimeValue(trx, 'mode_probe') };
    });
    expect(seen).toEqual({ first: '0', mode: 'live' });
    // Outside it, the commit is there.
    expect(await getRuntimeValue(reader.db, 'mode_probe')).toBe('rolled_back');
  });
});

describe.each(list.filter((b) => b.name === 'postgres'))('store on $name: several processes', (backend) => {
  it('two stores opening one fresh database at once migrate it once', async () => {
    const target = backend.target();
    const stores = await Promise.all([openStore(target), openStore(target), openStore(target)]);
    try {
      expect(await tableNames(stores[0]!)).toEqual(TABLES);
      expect(await appliedMigrations(stores[2]!)).toEqual(Object.keys(migrations('postgres')).sort());
    } finally {
      for (const store of stores) await store.close();
    }
  });
});

describe('store on sqlite: durability settings', () => {
  it('runs in WAL mode with synchronous FULL and foreign keys on', async () => {
    const store = await openStore(sqliteBackend.target());
    try {
      const raw = store.sqlite!;
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.pragma('synchronous', { simple: true })).toBe(2); // 2 = FULL
      expect(raw.pragma('foreign_keys', { simple: true })).toBe(1);
    } finally {
      await store.close();
    }
  });
});
