/**
 * `valhalla archive`: completed leads whose last change is before the cutoff are archived with their
 * personal data erased, in audited chunks; leads not complete are never touched and are reported.
 * The real app, ingest, engine and store on SQLite and PostgreSQL; a stub partner; a ManualClock.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type App, initialize } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { writeGoLiveAt } from '../../src/guard/index.js';
import { eraseLead } from '../../src/privacy/erasure.js';
import { type ArchiveResult, archiveCompleted, retentionCutoff } from '../../src/privacy/retention.js';
import type { Lead } from '../../src/store/index.js';
import { leadFromRow } from '../../src/store/leads.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { phase4Env, runInProcess, testEnv, UNCALLED_PARTNER } from '../support/cli.js';
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

type Row = Lead & { erased_at: number | null };

interface World {
  dir: string;
  dbUrl: string;
  clock: ManualClock;
  app: App;
  files: number;
}

async function world(backend: Backend, start = T0, env: Record<string, string> = {}): Promise<World> {
  const dir = tempDir();
  const dbUrl = backend.databaseUrl();
  const config = loadConfig({
    cwd: dir,
    env: phase4Env(dir, UNCALLED_PARTNER, { VALHALLA_DATABASE_URL: dbUrl, ...env }),
  });
  const clock = new ManualClock(start);
  const { app } = await initialize(config, { clock });
  cleanups.push(() => app.close());
  await writeGoLiveAt(app.store.db, start - 30 * HOUR);
  return { dir, dbUrl, clock, app, files: 0 };
}

const emailOf = (tag: string) => `${tag}@retention.example.test`;

/** Leads `tag` with a score (default 80; below 40: below threshold) and a source age (default 1 h). */
async function ingest(w: World, people: { tag: string; score?: number; ageMs?: number }[]) {
  const file = join(w.dir, `leads-${++w.files}.jsonl`);
  const lines = people.map((p, i) =>
    JSON.stringify({
      external_id: `CRM-${p.tag}`,
      name: `Person ${p.tag}`,
      email: emailOf(p.tag),
      phone: `+44 20 7946 ${String(3000 + (i % 1000))}`,
      company: `${p.tag} Ltd`,
      score: p.score ?? 80,
      source_timestamp: new Date(w.clock.now() - (p.ageMs ?? HOUR)).toISOString(),
    }),
  );
  writeFileSync(file, `${lines.join('\n')}\n`);
  return w.app.ingest({ path: file });
}

/** One live cycle against a stub partner that answers every batch with `outcome`. */
async function cycle(w: World, outcome: 'accept' | 'refuse') {
  return w.app
    .engine({ gates: CLEARED, partner: answeringPartner(outcome), sleep: w.clock.sleep })
    .runCycle();
}

async function rows(w: World): Promise<Map<string, Row>> {
  const all: Row[] = (await w.app.store.db.selectFrom('leads').selectAll().orderBy('id').execute()).map(
    leadFromRow,
  );
  return new Map(all.map((r) => [r.erased_at === null ? r.email.split('@')[0]! : `#${r.id}`, r]));
}

async function byId(w: World, id: number): Promise<Row> {
  return leadFromRow(
    await w.app.store.db.selectFrom('leads').selectAll().where('id', '=', id).executeTakeFirstOrThrow(),
  );
}

async function archivedEntries(w: World) {
  const entries = await w.app.store.db
    .selectFrom('audit_log')
    .selectAll()
    .where('action', '=', 'leads.archived')
    .orderBy('seq')
    .execute();
  return entries.map((e) => ({ ...e, details: JSON.parse(e.details) as Record<string, unknown> }));
}

function done(result: ArchiveResult) {
  if (result.kind !== 'done') throw new Error(`expected a report, got ${JSON.stringify(result)}`);
  return result;
}

/**
 * Every state a lead can end a day in, at T0: exported (2), below threshold, expired, dropped from
 * quarantine (archived, data kept), quarantined, pending, and in flight (a queued batch). Then a
 * month later, one more below threshold (after any cutoff the tests use).
 */
async function everyState(w: World) {
  await ingest(w, [
    { tag: 'exp1', score: 90 },
    { tag: 'exp2', score: 85 },
  ]);
  expect((await cycle(w, 'accept')).accepted).toBe(2);
  await ingest(w, [
    { tag: 'low1', score: 10 },
    { tag: 'old1', ageMs: 20 * DAY },
  ]);
  await ingest(w, [{ tag: 'quar1' }, { tag: 'drop1' }]);
  expect((await cycle(w, 'refuse')).quarantined).toBe(2);
  const before = await rows(w);
  await w.app.operatorActions().drop([before.get('drop1')!.id], 'checked: the partner refused it');
  await ingest(w, [{ tag: 'pend1' }, { tag: 'fly1' }]);
  const fly = (await rows(w)).get('fly1')!;
  await queueInLiveBatch(w.app.store, fly, 'waiting-batch', T0);
  w.clock.set(T0 + 30 * DAY);
  await ingest(w, [{ tag: 'late1', score: 10 }]);
  const states = Object.fromEntries([...(await rows(w))].map(([tag, r]) => [tag, r.state]));
  expect(states).toEqual({
    exp1: 'exported',
    exp2: 'exported',
    low1: 'below_threshold',
    old1: 'expired',
    quar1: 'quarantined',
    drop1: 'archived',
    pend1: 'pending',
    fly1: 'in_flight',
    late1: 'below_threshold',
  });
}

describe.each(list)('archive on $name', (backend) => {
  it('completed leads before the cutoff are archived with their data erased; the rest untouched, counted, audited', async () => {
    const w = await world(backend);
    await everyState(w);
    // Attributes on every lead: an archived lead keeps none of them, the others keep theirs.
    await w.app.store.db
      .updateTable('leads')
      .set({ attributes: JSON.stringify({ title: 'Archivist', country: 'SE' }) })
      .execute();
    const before = await rows(w);
    const cutoff = T0 + DAY;

    const result = done(await archiveCompleted(w.app, { before: cutoff }));
    expect(result).toEqual({
      kind: 'done',
      cutoff: new Date(cutoff).toISOString(),
      retentionDays: null,
      dryRun: false,
      archived: { exported: 2, expired: 1, below_threshold: 1, archived: 1, total: 5 },
      chunks: 1,
      leftAsTheyAre: { pending: 1, in_flight: 1, quarantined: 1, total: 3 },
      storageNote: backend.name === 'sqlite' ? null : expect.stringContaining('VACUUM'),
    });

    const now = w.clock.now();
    for (const tag of ['exp1', 'exp2', 'low1', 'old1', 'drop1']) {
      const was = before.get(tag)!;
      const row = await byId(w, was.id);
      expect(row).toMatchObject({
        state: 'archived',
        name: '(erased)',
        email: '(erased)',
        phone: null,
        company: null,
        external_id: null,
        attributes: null,
        erased_at: now,
        updated_at: now,
        dedup_key: was.dedup_key,
        score: was.score,
        exported_at: was.exported_at,
      });
    }
    expect((await byId(w, before.get('exp1')!.id)).exported_at).not.toBeNull();
    expect((await byId(w, before.get('exp1')!.id)).state_reason).toBe(
      `archived: last change before the retention cutoff ${new Date(cutoff).toISOString()} (was exported)`,
    );
    // A dropped lead keeps the reason it was dropped for.
    expect((await byId(w, before.get('drop1')!.id)).state_reason).toContain('dropped from quarantine');
    for (const tag of ['quar1', 'pend1', 'fly1', 'late1']) {
      const was = before.get(tag)!;
      expect(await byId(w, was.id)).toEqual(was);
      expect(was.attributes).toEqual({ title: 'Archivist', country: 'SE' });
    }

    const [entry, ...more] = await archivedEntries(w);
    expect(more).toEqual([]);
    const archivedIds = ['exp1', 'exp2', 'low1', 'old1', 'drop1']
      .map((t) => before.get(t)!.id)
      .sort((a, b) => a - b);
    expect(entry).toMatchObject({
      actor: 'test-operator',
      details: {
        cutoff: new Date(cutoff).toISOString(),
        retentionDays: null,
        count: 5,
        byState: { exported: 2, expired: 1, below_threshold: 1, archived: 1 },
        leads: archivedIds,
      },
    });
    expect(JSON.stringify(entry)).not.toContain('retention.example.test');
    expect((await w.app.audit.verify()).ok).toBe(true);
    const status = await w.app.status();
    expect(status.leads).toMatchObject({ archived: 5, exported: 0, total: 9 });

    // Again: nothing left to do, nothing recorded.
    const again = done(await archiveCompleted(w.app, { before: cutoff }));
    expect(again.archived.total).toBe(0);
    expect(again.chunks).toBe(0);
    expect(await archivedEntries(w)).toHaveLength(1);

    // A later cutoff takes the lead that changed later, and only it.
    w.clock.advance(1_000);
    const later = done(await archiveCompleted(w.app, { before: w.clock.now() }));
    expect(later.archived).toMatchObject({ below_threshold: 1, total: 1 });
    expect((await byId(w, before.get('late1')!.id)).state).toBe('archived');
  });

  it('--dry-run counts what the real run then does, and changes nothing', async () => {
    const w = await world(backend);
    await everyState(w);
    const snapshot = await w.app.store.db.selectFrom('leads').selectAll().orderBy('id').execute();
    const auditBefore = (await w.app.audit.verify()).entries;

    const dry = done(await archiveCompleted(w.app, { before: T0 + DAY, dryRun: true }));
    expect(dry).toMatchObject({
      dryRun: true,
      chunks: 0,
      archived: { exported: 2, expired: 1, below_threshold: 1, archived: 1, total: 5 },
      leftAsTheyAre: { pending: 1, in_flight: 1, quarantined: 1, total: 3 },
      storageNote: null,
    });
    expect(await w.app.store.db.selectFrom('leads').selectAll().orderBy('id').execute()).toEqual(snapshot);
    expect((await w.app.audit.verify()).entries).toBe(auditBefore);

    const real = done(await archiveCompleted(w.app, { before: T0 + DAY }));
    expect(real.archived).toEqual(dry.archived);
  });

  it('2,500 leads in chunks of 1,000: three commits, three entries; a run stopped after one chunk goes on when run again', async () => {
    const w = await world(backend);
    await ingest(
      w,
      Array.from({ length: 2_500 }, (_, i) => ({ tag: `bulk${i}`, score: 10 })),
    );
    w.clock.advance(10 * DAY);
    const cutoff = T0 + DAY;

    // Stopped after the first commit (the process killed, say): that chunk stays done.
    await expect(
      archiveCompleted(w.app, {
        before: cutoff,
        chunkSize: 1_000,
        onChunk: () => {
          throw new Error('stopped');
        },
      }),
    ).rejects.toThrow('stopped');
    const counted = async () =>
      Object.fromEntries(
        (
          await w.app.store.db
            .selectFrom('leads')
            .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
            .groupBy('state')
            .execute()
        ).map((r) => [r.state, Number(r.n)]),
      );
    expect(await counted()).toEqual({ archived: 1_000, below_threshold: 1_500 });

    const seen: number[] = [];
    const rest = done(
      await archiveCompleted(w.app, { before: cutoff, chunkSize: 1_000, onChunk: (n) => seen.push(n) }),
    );
    expect(rest.chunks).toBe(2);
    expect(rest.archived).toMatchObject({ below_threshold: 1_500, total: 1_500 });
    expect(seen).toEqual([1_000, 1_500]);
    expect(await counted()).toEqual({ archived: 2_500 });
    const entries = await archivedEntries(w);
    expect(entries.map((e) => e.details.count)).toEqual([1_000, 1_000, 500]);
    const ids = entries.flatMap((e) => e.details.leads as number[]);
    expect(new Set(ids).size).toBe(2_500);
    const left = await w.app.store.db
      .selectFrom('leads')
      .select('id')
      .where('email', '!=', '(erased)')
      .execute();
    expect(left).toEqual([]);
    expect((await w.app.audit.verify()).ok).toBe(true);
  });

  it('a lead erased on request and still exported is archived later, keeping the time of its erasure', async () => {
    const w = await world(backend);
    await ingest(w, [{ tag: 'req1', score: 90 }]);
    await cycle(w, 'accept');
    const lead = (await rows(w)).get('req1')!;
    const erased = await eraseLead(w.app, { target: { id: lead.id }, reason: 'DSR-20' });
    expect(erased.kind).toBe('erased');
    expect(await byId(w, lead.id)).toMatchObject({ state: 'exported', erased_at: T0 });

    w.clock.advance(40 * DAY);
    const result = done(await archiveCompleted(w.app, { before: T0 + DAY }));
    expect(result.archived).toMatchObject({ exported: 1, total: 1 });
    expect(await byId(w, lead.id)).toMatchObject({
      state: 'archived',
      erased_at: T0,
      updated_at: T0 + 40 * DAY,
      exported_at: lead.exported_at,
    });
  });

  it('refuses a cutoff in the future; the retention window gives now minus the days', async () => {
    const w = await world(backend, T0, { VALHALLA_RETENTION_DAYS: '30' });
    await ingest(w, [{ tag: 'r1', score: 10 }]);
    const future = await archiveCompleted(w.app, { before: T0 + 1 });
    expect(future).toEqual({
      kind: 'refused',
      message: expect.stringContaining('is in the future'),
    });
    expect((await archiveCompleted(w.app, { before: T0, chunkSize: 0 })).kind).toBe('refused');
    expect(retentionCutoff(w.app)).toEqual({ before: T0 - 30 * DAY, retentionDays: 30 });
    w.clock.advance(31 * DAY);
    const window = retentionCutoff(w.app)!;
    const result = done(await archiveCompleted(w.app, window));
    expect(result).toMatchObject({ retentionDays: 30, archived: { total: 1 } });
    expect((await archivedEntries(w))[0]!.details.retentionDays).toBe(30);

    const unset = await world(backend);
    expect(retentionCutoff(unset.app)).toBeNull();
  });

  it('the CLI: --before and --retention, --dry-run and --json; usage errors exit 2, no retention window exits 3', async () => {
    // The CLI runs on the system clock: the leads' history lies two months back.
    const start = Date.now() - 60 * DAY;
    const w = await world(backend, start);
    await ingest(w, [{ tag: 'c1', score: 10 }, { tag: 'c2', score: 10 }, { tag: 'c3' }]);
    await w.app.close();
    const base = testEnv(w.dir, { VALHALLA_DATABASE_URL: w.dbUrl });
    const cli = (args: string[], env: Record<string, string> = {}) =>
      runInProcess(['archive', ...args], { cwd: w.dir, env: { ...base, ...env } });
    const day = new Date(start + DAY).toISOString().slice(0, 10);

    const dry = await cli(['--before', day, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('dry run: would archive 2 leads last changed before');
    expect(dry.stdout).toContain('below threshold 2');
    expect(dry.stdout).toContain('left as they are, not complete: pending 1, in flight 0, quarantined 0');

    const json = await cli(['--retention', '--json'], { VALHALLA_RETENTION_DAYS: '30' });
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      retentionDays: 30,
      dryRun: false,
      chunks: 1,
      archived: { below_threshold: 2, total: 2 },
      leftAsTheyAre: { pending: 1, total: 1 },
    });
    const again = await cli(['--before', day]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('archived 0 leads');

    expect((await cli([])).code).toBe(2);
    expect((await cli(['--before', day, '--retention'])).code).toBe(2);
    const badDate = await cli(['--before', '2026-02-30']);
    expect(badDate.code).toBe(2);
    expect(badDate.stderr).toContain('not a real date');
    expect((await cli(['--before', 'yesterday'])).code).toBe(2);
    const future = await cli(['--before', new Date(Date.now() + 2 * DAY).toISOString().slice(0, 10)]);
    expect(future.code).toBe(2);
    expect(future.stderr).toContain('is in the future');
    const noWindow = await cli(['--retention']);
    expect(noWindow.code).toBe(3);
    expect(noWindow.stderr).toContain('VALHALLA_RETENTION_DAYS is not set');
    const badWindow = await cli(['--retention'], { VALHALLA_RETENTION_DAYS: '0' });
    expect(badWindow.code).toBe(3);
    expect(badWindow.stderr).toContain('VALHALLA_RETENTION_DAYS="0"');
  });
});
