import { sql } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { LEAD_STATES } from '../../src/policy/index.js';
import {
  createIngestRun,
  getRuntimeValue,
  insertLeadsSkippingDuplicates,
  isStoreError,
  migrateToLatest,
  type NewLead,
  openStore,
  readConsistently,
  type Store,
  type StoreTarget,
  setRuntimeValue,
} from '../../src/store/index.js';
import { migrations } from '../../src/store/migrations/index.js';
import { backends, dropTestSchemas, sqliteBackend } from '../support/backends.js';
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

async function appliedMigrations(store: Store): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select name from valhalla_migration order by name`.execute(
    store.db,
  );
  return rows.map((r) => r.name);
}

function lead(runId: number, dedupKey: string, overrides: Partial<NewLead> = {}): NewLead {
  return {
    dedup_key: dedupKey,
    external_id: null,
    name: 'Test Person',
    email: `${dedupKey}@example.test`,
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
    await insertLeadsSkippingDuplicates(first.db, [lead(runId, 'kept')]);
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
    expect(leads).toEqual([{ dedup_key: 'kept' }]);
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

  it('the dedup key is unique in the database itself: a raw second INSERT fails', async () => {
    const store = await open();
    const runId = await withRun(store);
    const insert = (score: number) =>
      sql`insert into leads (dedup_key, name, email, score, source_ts, state, ingested_at, updated_at, run_id, source_line)
          values ('same-key', 'n', 'e@example.test', ${score}, ${NOW}, 'pending', ${NOW}, ${NOW}, ${runId}, 1)`.execute(
        store.db,
      );
    await insert(50);
    await expect(insert(60)).rejects.toThrow(/unique|duplicate key/i);
    expect(await store.db.selectFrom('leads').select(['dedup_key', 'score']).execute()).toEqual([
      { dedup_key: 'same-key', score: 50 },
    ]);
  });

  it('insertLeadsSkippingDuplicates returns only the inserted keys, duplicates within the batch included', async () => {
    const store = await open();
    const runId = await withRun(store);
    const stored = await insertLeadsSkippingDuplicates(store.db, [lead(runId, 'b', { score: 41 })]);
    expect([...stored.keys()]).toEqual(['b']);

    const inserted = await insertLeadsSkippingDuplicates(store.db, [
      lead(runId, 'a', { score: 60, source_line: 2 }),
      lead(runId, 'b', { score: 99, source_line: 3 }),
      lead(runId, 'a', { score: 70, source_line: 4 }),
      lead(runId, 'c', { score: 80, source_line: 5 }),
    ]);
    expect([...inserted.keys()].sort()).toEqual(['a', 'c']);
    const rows = await store.db
      .selectFrom('leads')
      .select(['id', 'dedup_key', 'score', 'source_line'])
      .orderBy('dedup_key')
      .execute();
    // The first row of a repeated key is the one stored; the stored lead b is untouched.
    expect(rows.map(({ dedup_key, score, source_line }) => ({ dedup_key, score, source_line }))).toEqual([
      { dedup_key: 'a', score: 60, source_line: 2 },
      { dedup_key: 'b', score: 41, source_line: 1 },
      { dedup_key: 'c', score: 80, source_line: 5 },
    ]);
    for (const row of rows.filter((r) => r.dedup_key !== 'b'))
      expect(inserted.get(row.dedup_key)).toBe(row.id);
  });

  it('insertLeadsSkippingDuplicates skips a duplicate that falls in a later statement of a large batch', async () => {
    const store = await open();
    const runId = await withRun(store);
    const rows = Array.from({ length: 1_500 }, (_, i) => lead(runId, `k${i}`, { source_line: i + 1 }));
    rows[1_200] = lead(runId, 'k5', { source_line: 1_201, score: 90 });
    const inserted = await insertLeadsSkippingDuplicates(store.db, rows);
    expect(inserted.size).toBe(1_499);
    expect(inserted.has('k1200')).toBe(false);
    const count = await store.db
      .selectFrom('leads')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(1_499);
    const k5 = await store.db
      .selectFrom('leads')
      .select('score')
      .where('dedup_key', '=', 'k5')
      .executeTakeFirstOrThrow();
    expect(k5.score).toBe(50);
  });

  it('a score can change before export, and never after (database trigger)', async () => {
    const store = await open();
    const runId = await withRun(store);
    const id = (await insertLeadsSkippingDuplicates(store.db, [lead(runId, 'x', { score: 50 })])).get('x')!;
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
    const id = (await insertLeadsSkippingDuplicates(store.db, [lead(runId, 'y')])).get('y')!;
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
    const ids = await insertLeadsSkippingDuplicates(store.db, [lead(runId, 'sent'), lead(runId, 'unsent')]);
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
    expect(left).toEqual([{ dedup_key: 'sent', exported_at: NOW }]);
    if (store.dialect === 'postgres') {
      await expect(sql`truncate leads cascade`.execute(store.db)).rejects.toThrow(
        /exported lead cannot be deleted/,
      );
    } else {
      // INSERT OR REPLACE deletes the row it collides with: the delete trigger must still refuse it.
      const row = lead(runId, 'sent', { score: 99 });
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
        .values(lead(runId, 'bad', bad as Partial<NewLead>))
        .execute(),
    ).rejects.toThrow(/check constraint/i);
    const id = (await insertLeadsSkippingDuplicates(store.db, [lead(runId, 'good')])).get('good')!;
    await expect(
      store.db
        .updateTable('leads')
        .set(bad as Partial<NewLead>)
        .where('id', '=', id)
        .execute(),
    ).rejects.toThrow(/check constraint/i);
    const row = await store.db.selectFrom('leads').select(['dedup_key', 'state', 'score']).execute();
    expect(row).toEqual([{ dedup_key: 'good', state: 'pending', score: 50 }]);
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
    expect((await insertLeadsSkippingDuplicates(store.db, rows)).size).toBe(rows.length);
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
