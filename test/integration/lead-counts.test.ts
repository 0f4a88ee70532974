/**
 * Leads by state as the database keeps them (migration 0014: triggers in the transaction that changes
 * a state) equal a real count of the rows after every kind of change: ingest (accepted in three states,
 * duplicates and rejects stored as no lead), export, quarantine, a drop from quarantine, erasure,
 * retention, a lead queued in flight, and a transaction rolled back. `status` reads the kept counts.
 * The real app, ingest, engine and store on SQLite and PostgreSQL; a stub partner; a ManualClock.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type App, initialize } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { writeGoLiveAt } from '../../src/guard/index.js';
import { eraseLead } from '../../src/privacy/erasure.js';
import { archiveCompleted } from '../../src/privacy/retention.js';
import { countLeadsByState, scanLeadsByState } from '../../src/store/index.js';
import { leadFromRow } from '../../src/store/leads.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { phase4Env, UNCALLED_PARTNER } from '../support/cli.js';
import { queueInLiveBatch } from '../support/outbox.js';
import { tempDir } from '../support/tmp.js';
import { answeringPartner, CLEARED, DAY, HOUR } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);

const T0 = Date.parse('2026-09-01T12:00:00Z');

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface World {
  dir: string;
  clock: ManualClock;
  app: App;
  files: number;
}

async function world(backend: Backend): Promise<World> {
  const dir = tempDir();
  const config = loadConfig({
    cwd: dir,
    env: phase4Env(dir, UNCALLED_PARTNER, { VALHALLA_DATABASE_URL: backend.databaseUrl() }),
  });
  const clock = new ManualClock(T0);
  const { app } = await initialize(config, { clock });
  cleanups.push(() => app.close());
  await writeGoLiveAt(app.store.db, T0 - 30 * HOUR);
  return { dir, clock, app, files: 0 };
}

/** A CSV of `people` (score 80 and 1 h old unless said), plus rows given as they are. */
async function ingest(
  w: World,
  people: { tag: string; score?: number; ageMs?: number }[],
  extra: string[] = [],
) {
  const file = join(w.dir, `leads-${++w.files}.csv`);
  const rows = people.map(
    (p) =>
      `CRM-${p.tag},Person ${p.tag},${p.tag}@counts.example.test,,${p.tag} Ltd,${p.score ?? 80},${new Date(w.clock.now() - (p.ageMs ?? HOUR)).toISOString()},10`,
  );
  writeFileSync(
    file,
    `${['external_id,name,email,phone,company,score,source_timestamp,value', ...rows, ...extra].join('\n')}\n`,
  );
  return w.app.ingest({ path: file });
}

async function cycle(w: World, outcome: 'accept' | 'refuse') {
  return w.app
    .engine({ gates: CLEARED, partner: answeringPartner(outcome), sleep: w.clock.sleep })
    .runCycle();
}

/** The kept counts equal a scan of the rows, and `status` reports them; returns them. */
async function expectKeptEqualsScan(w: World) {
  const kept = await countLeadsByState(w.app.store.db);
  const scanned = await scanLeadsByState(w.app.store.db);
  expect(kept).toEqual(scanned);
  const status = await w.app.status();
  const total = Object.values(scanned).reduce((a, b) => a + b, 0);
  expect(status.leads).toMatchObject({ ...scanned, total });
  return kept;
}

async function idOf(w: World, tag: string): Promise<number> {
  const row = await w.app.store.db
    .selectFrom('leads')
    .select('id')
    .where('email', '=', `${tag}@counts.example.test`)
    .executeTakeFirstOrThrow();
  return Number(row.id);
}

describe.each(list)('kept lead counts on $name', (backend) => {
  it('equal a real count after ingest, export, quarantine, a drop, erasure, retention and a rollback', async () => {
    const w = await world(backend);
    expect(await expectKeptEqualsScan(w)).toEqual({});

    // Accepted in three states; a duplicate of an earlier row and a rejected row store no lead.
    const first = await ingest(
      w,
      [
        { tag: 'exp1', score: 90 },
        { tag: 'exp2', score: 85 },
        { tag: 'low1', score: 10 },
        { tag: 'old1', ageMs: 20 * DAY },
      ],
      [
        'CRM-exp1b,Again,exp1@counts.example.test,,X,70,2026-09-01T10:00:00Z,',
        'CRM-bad,Bad,not-an-email,,X,70,2026-09-01T10:00:00Z,',
      ],
    );
    expect(first).toMatchObject({ accepted: 4, duplicate: 1, rejected: 1 });
    expect(await expectKeptEqualsScan(w)).toEqual({ pending: 2, below_threshold: 1, expired: 1 });

    // Exported by a live cycle.
    expect((await cycle(w, 'accept')).accepted).toBe(2);
    expect(await expectKeptEqualsScan(w)).toEqual({ exported: 2, below_threshold: 1, expired: 1 });

    // Quarantined on a refusal, one of them dropped (archived) by an operator.
    await ingest(w, [{ tag: 'quar1' }, { tag: 'drop1' }]);
    expect((await cycle(w, 'refuse')).quarantined).toBe(2);
    expect(await expectKeptEqualsScan(w)).toMatchObject({ quarantined: 2 });
    await w.app.operatorActions().drop([await idOf(w, 'drop1')], 'checked: the partner refused it');
    expect(await expectKeptEqualsScan(w)).toMatchObject({ quarantined: 1, archived: 1 });

    // In flight (a queued live batch), then an erasure of a pending lead.
    await ingest(w, [{ tag: 'pend1' }, { tag: 'fly1' }, { tag: 'gone1' }]);
    const fly = leadFromRow(
      await w.app.store.db
        .selectFrom('leads')
        .selectAll()
        .where('id', '=', await idOf(w, 'fly1'))
        .executeTakeFirstOrThrow(),
    );
    await queueInLiveBatch(w.app.store, fly, 'waiting-batch', T0);
    await expectKeptEqualsScan(w);
    const erased = await eraseLead(w.app, { target: { id: await idOf(w, 'gone1') }, reason: 'DSR-1' });
    expect(erased.kind).toBe('erased');
    await expectKeptEqualsScan(w);

    // Retention: completed leads archived a month later.
    w.clock.advance(40 * DAY);
    const archived = await archiveCompleted(w.app, { before: w.clock.now() - DAY });
    expect(archived.kind).toBe('done');
    const afterRetention = await expectKeptEqualsScan(w);
    expect(afterRetention.exported ?? 0).toBe(0);
    expect(afterRetention.archived).toBeGreaterThanOrEqual(5);

    // A change rolled back takes its count back with it.
    const before = await countLeadsByState(w.app.store.db);
    await expect(
      w.app.store.db.transaction().execute(async (trx) => {
        await trx.updateTable('leads').set({ state: 'quarantined' }).where('state', '=', 'pending').execute();
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect(await countLeadsByState(w.app.store.db)).toEqual(before);
    await expectKeptEqualsScan(w);
  });

  it('equal a real count after an ingest of many chunks with duplicates across them', async () => {
    const w = await world(backend);
    const people = Array.from({ length: 2_500 }, (_, i) => ({ tag: `p${i}`, score: i % 3 === 0 ? 20 : 70 }));
    await ingest(w, people);
    const again = await ingest(w, [
      ...people.slice(0, 1_000),
      ...Array.from({ length: 500 }, (_, i) => ({ tag: `q${i}` })),
    ]);
    expect(again).toMatchObject({ accepted: 500, duplicate: 1_000 });
    expect(await expectKeptEqualsScan(w)).toEqual({ pending: 1_666 + 500, below_threshold: 834 });
    if (backend.name === 'postgres') {
      // Each statement appended its change; folding (about one call in fifty) leaves a row per state;
      // 1,000 calls all without a fold: 0.98^1000, about 2e-9.
      const rows = async () =>
        Number(
          (await sql<{ n: string }>`select count(*) as n from lead_state_counts`.execute(w.app.store.db))
            .rows[0]!.n,
        );
      for (let i = 0; i < 1_000 && (await rows()) > 2; i++) {
        await sql`select valhalla_fold_lead_state_counts()`.execute(w.app.store.db);
      }
      expect(await rows()).toBe(2);
      await expectKeptEqualsScan(w);
    }
  });
});
