/**
 * Synthetic leads already stored when the release that marks them arrives (migration 0011): the
 * reserved prefix, the file `valhalla run` loads into an empty store, and the external ids the
 * generator wrote before the prefix existed (`EXT-<seed>-<n>`) are marked, so none is ever sent live;
 * other ids are not. The real ingest on SQLite and PostgreSQL; the marks cleared first, as a store
 * written before the migration holds them.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type App, openApp } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { isSyntheticExternalId } from '../../src/policy/index.js';
import { markStoredSyntheticLeads } from '../../src/store/migrations/0011-operator-safety.js';
import { backends, dropTestSchemas } from '../support/backends.js';
import { testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { HOUR, NOW } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
const opened: App[] = [];
afterEach(async () => {
  for (const app of opened.splice(0)) await app.close();
});

describe.each(list)('synthetic leads stored before the mark, on $name', (backend) => {
  it('the prefix, the generator’s former ids and the start-up file are marked; every other id is not', async () => {
    const dir = tempDir();
    const env = testEnv(join(dir, 'data'), { VALHALLA_DATABASE_URL: backend.databaseUrl() });
    const app = await openApp({ config: loadConfig({ cwd: dir, env }), clock: new ManualClock(NOW) });
    opened.push(app);
    const ids = {
      'EXT-1-5': true,
      'EXT-12-34567': true,
      'SYNTHETIC-3-9': true,
      'EXT-1-5x': false,
      'EXT-A-1': false,
      'CRM-EXT-1-2': false,
      'EXT-1-2-3': false,
      'EXT--1': false,
      'ext-1-5': false,
      'CRM-88': false,
    } as const;
    const at = new Date(NOW - HOUR).toISOString();
    const rows = Object.keys(ids).map(
      (id, i) => `${id},Person ${i},p${i}@marks.example.test,,Co,80,${at},10`,
    );
    const file = join(dir, 'leads.csv');
    writeFileSync(
      file,
      `external_id,name,email,phone,company,score,source_timestamp,value\n${rows.join('\n')}\n`,
    );
    expect((await app.ingest({ path: file })).accepted).toBe(rows.length);
    // A store written before the migration: nothing marked.
    await app.store.db.updateTable('leads').set({ synthetic: 0 }).execute();

    const marked = await markStoredSyntheticLeads(app.store.db as never, app.store.dialect);
    expect(marked).toBe(Object.values(ids).filter(Boolean).length);
    const stored = await app.store.db.selectFrom('leads').select(['external_id', 'synthetic']).execute();
    expect(Object.fromEntries(stored.map((l) => [l.external_id, l.synthetic === 1]))).toEqual(ids);
  });
});

describe('the mark ingest reads from an external id', () => {
  it('the reserved prefix in any case, and the former generator’s EXT-<seed>-<n>; nothing else', () => {
    for (const id of ['SYNTHETIC-1-2', ' synthetic-x ', 'EXT-1-5', ' EXT-12-34567 '])
      expect(isSyntheticExternalId(id), id).toBe(true);
    for (const id of [
      'EXT-1-5x',
      'EXT-A-1',
      'CRM-EXT-1-2',
      'EXT-1-2-3',
      'ext-1-5',
      'CRM-88',
      '',
      null,
      undefined,
    ]) {
      expect(isSyntheticExternalId(id), String(id)).toBe(false);
    }
  });
});
