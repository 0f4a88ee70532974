/**
 * What every SQLite connection of the product is set to, on a real database file, after the migrations
 * ran on it (they switch foreign keys off around their transaction: src/store/migrate.ts).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { foldLogLess, openStore, type Store } from '../../src/store/index.js';
import { WAL_SIZE_LIMIT_BYTES } from '../../src/store/open.js';
import { tempDir } from '../support/tmp.js';

const opened: Store[] = [];
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
});

async function open(path: string): Promise<Store> {
  const store = await openStore({ kind: 'sqlite', path });
  opened.push(store);
  return store;
}

describe('a SQLite connection of the store', () => {
  it('zeroes what it frees, and enforces foreign keys after migrating; statement journals in files but during an ingest', async () => {
    const path = join(tempDir(), 'valhalla.db');
    // The first open migrates the new file from nothing: every migration, 0015's rebuild of leads included.
    const store = await open(path);
    const raw = store.sqlite!;
    // 0 = the default, files: a statement over a million rows must not journal them in memory
    // (an ingest keeps its small ones in memory: test/integration/ingest.test.ts).
    expect(raw.pragma('temp_store', { simple: true })).toBe(0);
    expect(raw.pragma('secure_delete', { simple: true })).toBe(1);
    expect(raw.pragma('foreign_keys', { simple: true })).toBe(1);
    // Enforced, not only set: an identity of a lead that does not exist is refused.
    expect(() =>
      raw.prepare('insert into lead_identities (key, lead_id) values (?, 999)').run(Buffer.alloc(12, 7)),
    ).toThrow(/FOREIGN KEY/);
    expect(raw.pragma('foreign_key_check')).toEqual([]);
  });

  it('a write-ahead log grown past 64 MiB is cut back to 64 MiB when it starts over', async () => {
    const path = join(tempDir(), 'valhalla.db');
    const store = await open(path);
    const raw = store.sqlite!;
    expect(raw.pragma('journal_size_limit', { simple: true })).toBe(WAL_SIZE_LIMIT_BYTES);
    // As a long ingest leaves it: about 80 MiB of log between two folds.
    const restoreFolds = foldLogLess(store, 1_000_000);
    raw.exec('create table log_growth (bytes blob)');
    const insert = raw.prepare('insert into log_growth (bytes) values (randomblob(4000))');
    raw.transaction(() => {
      for (let i = 0; i < 20_000; i++) insert.run();
    })();
    expect(statSync(`${path}-wal`).size).toBeGreaterThan(WAL_SIZE_LIMIT_BYTES);
    restoreFolds();
    // The next write starts the folded log over, and cuts the file.
    raw.prepare("insert into log_growth (bytes) values (x'00')").run();
    expect(statSync(`${path}-wal`).size).toBeLessThanOrEqual(WAL_SIZE_LIMIT_BYTES);
  });

  it('a migration that leaves a row pointing at nothing is refused, and nothing of it is applied', async () => {
    const path = join(tempDir(), 'valhalla.db');
    await (await open(path)).close();
    opened.length = 0;
    // As an older release would have left it: the last migration not applied yet, and (what no release
    // wrote, but a hand edit could) a lead identity whose lead is gone.
    const raw = new Database(path);
    raw.pragma('foreign_keys = OFF');
    raw
      .prepare(
        "delete from valhalla_migration where name in ('0015-lead-identities', '0016-lead-attributes', '0017-expiry-through-eligible')",
      )
      .run();
    raw.exec("create index leads_pending_age on leads (source_ts) where state = 'pending'");
    raw.exec('alter table leads drop column attributes');
    raw.exec('drop table lead_identities');
    raw.exec('alter table leads add column email_key text');
    raw.exec('alter table leads add column external_id_key text');
    // Rows of ingest_outcomes that point at a lead that does not exist.
    raw.exec(
      "insert into ingest_runs (started_at, source, format, operator, status) values (1, 'x', 'csv', 'ops', 'completed')",
    );
    raw.exec(
      "insert into ingest_outcomes (run_id, line, outcome, reason, lead_id) values (1, 2, 'duplicate', 'r', 42)",
    );
    raw.close();

    await expect(openStore({ kind: 'sqlite', path })).rejects.toThrow(
      /left 1 row\(s\) pointing at nothing \(first: ingest_outcomes row \d+ -> leads\)/,
    );
    const after = new Database(path, { readonly: true });
    const applied = after.prepare('select name from valhalla_migration order by name').pluck().all();
    expect(applied).not.toContain('0015-lead-identities');
    expect(
      after.prepare("select count(*) from sqlite_schema where name = 'lead_identities'").pluck().get(),
    ).toBe(0);
    after.close();
  });
});
