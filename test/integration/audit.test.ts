import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type AuditEntry,
  type AuditLog,
  createAuditLog,
  entryHash,
  GENESIS_HASH,
} from '../../src/audit/index.js';
import { ManualClock } from '../../src/clock/index.js';
import type { AuditAction } from '../../src/policy/index.js';
import {
  getRuntimeValue,
  openStore,
  type Store,
  type StoreTarget,
  setRuntimeValue,
} from '../../src/store/index.js';
import { backends, dropTestSchemas, sqliteBackend } from '../support/backends.js';
import { REPO_ROOT, runInProcess, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { HOUR } from '../support/world.js';

/** The chain takes any action name: these tests write names outside the product's vocabulary on purpose. */
const named = (action: string) => action as AuditAction;

const list = await backends();
afterAll(dropTestSchemas);

const START = Date.parse('2026-11-20T12:00:00Z');

async function chainRows(store: Store): Promise<AuditEntry[]> {
  return store.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
}

async function exec(store: Store, statement: string): Promise<void> {
  await sql.raw(statement).execute(store.db);
}

/** What an attacker with administrator rights does first: take the append-only triggers away. */
async function removeAppendOnlyGuards(store: Store): Promise<void> {
  if (store.dialect === 'sqlite') {
    for (const trigger of ['audit_log_no_update', 'audit_log_no_delete', 'audit_log_no_overwrite']) {
      await exec(store, `drop trigger ${trigger}`);
    }
  } else {
    await exec(store, 'alter table audit_log disable trigger user');
  }
}

describe.each(list)('audit chain on $name', (backend) => {
  let target: StoreTarget;
  let store: Store;
  let clock: ManualClock;
  let audit: AuditLog;
  const extraStores: Store[] = [];

  beforeEach(async () => {
    target = backend.target();
    store = await openStore(target);
    clock = new ManualClock(START);
    audit = createAuditLog(store, clock);
  });
  afterEach(async () => {
    for (const extra of extraStores.splice(0)) await extra.close();
    await store.close();
  });

  /** Five entries, one second apart. */
  async function fiveEntries(): Promise<AuditEntry[]> {
    for (let i = 1; i <= 5; i++) {
      await audit.record({
        actor: 'tester',
        action: named(`step.${i}`),
        subject: `lead:${i}`,
        details: { step: i },
      });
      clock.advance(1_000);
    }
    return chainRows(store);
  }

  it('append and record number entries 1..n, each linked to the one before, from the genesis hash', async () => {
    const first = await audit.record({
      actor: 'op',
      action: named('first'),
      details: { b: 1, a: { d: 2, c: [3, { f: 4, e: 5 }] } },
    });
    clock.advance(500);
    const batch = await store.db.transaction().execute((trx) =>
      audit.append(trx, [
        { actor: 'op', action: named('second'), subject: 'lead:7' },
        { actor: 'op', action: named('third'), details: {} },
      ]),
    );
    clock.advance(500);
    const last = await audit.record([{ actor: 'op', action: named('fourth') }]);
    const returned = [...first, ...batch, ...last];
    const rows = await chainRows(store);

    expect(rows).toEqual(returned);
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(rows[0]!.prev_hash).toBe(GENESIS_HASH);
    expect(GENESIS_HASH).toBe('0'.repeat(64));
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prev_hash).toBe(rows[i - 1]!.hash);
    for (const row of rows) {
      expect(row.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(row.hash).toBe(entryHash(row));
    }
    expect(new Set(rows.map((r) => r.hash)).size).toBe(rows.length);
    // details are stored as canonical JSON (keys sorted at every depth); a missing subject is null.
    expect(rows[0]!.details).toBe('{"a":{"c":[3,{"e":5,"f":4}],"d":2},"b":1}');
    expect(rows[0]!.subject).toBeNull();
    expect(rows[1]!.subject).toBe('lead:7');
    expect(rows[2]!.details).toBe('{}');
    expect(rows.map((r) => r.at)).toEqual([START, START + 500, START + 500, START + 1_000]);
    expect(await audit.record([])).toEqual([]);
  });

  it('verify: an intact chain is ok, with its entry count and head', async () => {
    expect(await audit.verify()).toEqual({
      ok: true,
      entries: 0,
      headHash: GENESIS_HASH,
      firstBreak: null,
      headMismatch: null,
    });
    const rows = await fiveEntries();
    const head = rows[4]!.hash;
    expect(await audit.verify()).toEqual({
      ok: true,
      entries: 5,
      headHash: head,
      firstBreak: null,
      headMismatch: null,
    });
    expect(await audit.verify({ expectHead: head })).toMatchObject({
      ok: true,
      entries: 5,
      headMismatch: null,
    });
  });

  const refusedWrites: [string, string][] = [
    ['an UPDATE of one entry', `update audit_log set details = '{"step":99}' where seq = 2`],
    ['an UPDATE of every entry', `update audit_log set actor = 'mallory'`],
    ['a DELETE of one entry', 'delete from audit_log where seq = 2'],
    ['a DELETE of the tail', 'delete from audit_log where seq > 1'],
    ['a DELETE of every entry', 'delete from audit_log'],
    [
      'an upsert over an entry',
      `insert into audit_log (seq, at, actor, action, subject, details, prev_hash, hash)
       select seq, at, actor, action, subject, details, prev_hash, hash from audit_log where seq = 2
       on conflict (seq) do update set actor = 'mallory'`,
    ],
    ...(backend.name === 'postgres'
      ? ([['a TRUNCATE', 'truncate audit_log']] as [string, string][])
      : ([
          [
            'an INSERT OR REPLACE over an entry',
            `insert or replace into audit_log (seq, at, actor, action, subject, details, prev_hash, hash)
             select seq, at, 'mallory', action, subject, details, prev_hash, hash from audit_log where seq = 2`,
          ],
        ] as [string, string][])),
  ];

  it.each(refusedWrites)('the database refuses %s', async (_what, statement) => {
    const before = await fiveEntries();
    await expect(exec(store, statement)).rejects.toThrow(/audit chain is append-only/);
    expect(await chainRows(store)).toEqual(before);
    expect(await audit.verify()).toMatchObject({ ok: true, entries: 5 });
  });

  describe('tampering by someone with administrator rights is detected', () => {
    it.each([
      ['details', `details = '{"step":300}'`],
      ['actor', `actor = 'mallory'`],
      ['action', `action = 'step.other'`],
      ['subject', 'subject = null'],
      ['time', 'at = at + 1'],
    ])('editing an entry’s %s: hash_mismatch at that entry', async (_field, assignment) => {
      const rows = await fiveEntries();
      await removeAppendOnlyGuards(store);
      await exec(store, `update audit_log set ${assignment} where seq = 3`);
      const edited = (await chainRows(store))[2]!;
      expect(edited).not.toEqual(rows[2]);
      expect(await audit.verify()).toEqual({
        ok: false,
        entries: 2,
        headHash: rows[1]!.hash,
        firstBreak: { seq: 3, problem: 'hash_mismatch', expectedHash: entryHash(edited) },
        headMismatch: null,
      });
    });

    it('deleting a middle entry: sequence_gap at the entry after it', async () => {
      await fiveEntries();
      await removeAppendOnlyGuards(store);
      await exec(store, 'delete from audit_log where seq = 3');
      expect(await audit.verify()).toMatchObject({
        ok: false,
        entries: 2,
        firstBreak: { seq: 4, problem: 'sequence_gap', expected: 3 },
      });
    });

    it('deleting the first entry: sequence_gap at entry 2', async () => {
      await fiveEntries();
      await removeAppendOnlyGuards(store);
      await exec(store, 'delete from audit_log where seq = 1');
      expect(await audit.verify()).toMatchObject({
        ok: false,
        entries: 0,
        headHash: GENESIS_HASH,
        firstBreak: { seq: 2, problem: 'sequence_gap', expected: 1 },
      });
    });

    it('deleting an entry and renumbering the rest: broken_link where the cut is', async () => {
      const rows = await fiveEntries();
      await removeAppendOnlyGuards(store);
      await exec(store, 'delete from audit_log where seq = 3');
      for (const seq of [4, 5]) await exec(store, `update audit_log set seq = ${seq - 1} where seq = ${seq}`);
      expect(await audit.verify()).toMatchObject({
        ok: false,
        entries: 2,
        firstBreak: { seq: 3, problem: 'broken_link', expectedPrevHash: rows[1]!.hash },
      });
    });

    it('swapping two entries: broken_link at the first of them', async () => {
      const rows = await fiveEntries();
      await removeAppendOnlyGuards(store);
      await exec(store, 'update audit_log set seq = -1 where seq = 2');
      await exec(store, 'update audit_log set seq = 2 where seq = 3');
      await exec(store, 'update audit_log set seq = 3 where seq = -1');
      expect((await chainRows(store)).map((r) => r.action)).toEqual([
        'step.1',
        'step.3',
        'step.2',
        'step.4',
        'step.5',
      ]);
      expect(await audit.verify()).toMatchObject({
        ok: false,
        entries: 1,
        firstBreak: { seq: 2, problem: 'broken_link', expectedPrevHash: rows[0]!.hash },
      });
    });

    it('editing an entry and forging its hash: broken_link at the next entry', async () => {
      const rows = await fiveEntries();
      await removeAppendOnlyGuards(store);
      const forged = { ...rows[2]!, details: '{"step":300}' };
      forged.hash = entryHash(forged);
      await sql`update audit_log set details = ${forged.details}, hash = ${forged.hash} where seq = 3`.execute(
        store.db,
      );
      expect(await audit.verify()).toEqual({
        ok: false,
        entries: 3,
        headHash: forged.hash,
        firstBreak: { seq: 4, problem: 'broken_link', expectedPrevHash: forged.hash },
        headMismatch: null,
      });
    });

    it('cutting entries off the end: caught with expectHead', async () => {
      const rows = await fiveEntries();
      const head = rows[4]!.hash;
      await removeAppendOnlyGuards(store);
      await exec(store, 'delete from audit_log where seq >= 4');
      // What is left is a consistent chain: only the head recorded elsewhere shows the loss.
      expect(await audit.verify()).toMatchObject({ ok: true, entries: 3 });
      expect(await audit.verify({ expectHead: head })).toEqual({
        ok: false,
        entries: 3,
        headHash: rows[2]!.hash,
        firstBreak: null,
        headMismatch: { expected: head, actual: rows[2]!.hash },
      });
    });
  });

  it('an entry appended in a transaction that rolls back is gone, with its effect', async () => {
    const before = await fiveEntries();
    const failure = store.db.transaction().execute(async (trx) => {
      await audit.append(trx, { actor: 'op', action: named('mode.paused') });
      await setRuntimeValue(trx, 'mode', 'paused', clock.now());
      throw new Error('the effect failed');
    });
    await expect(failure).rejects.toThrow('the effect failed');
    expect(await chainRows(store)).toEqual(before);
    expect(await getRuntimeValue(store.db, 'mode')).toBeUndefined();

    const [next] = await audit.record({ actor: 'op', action: named('after.rollback') });
    expect(next).toMatchObject({ seq: 6, prev_hash: before[4]!.hash });
    expect(await audit.verify()).toMatchObject({ ok: true, entries: 6 });
  });

  it('20 concurrent record() calls still form one unbroken chain (on PostgreSQL, from two pools)', async () => {
    // On PostgreSQL a second store on the same schema is a second pool: its appends race the first's.
    const writers = [audit];
    if (backend.name === 'postgres') {
      const second = await openStore(target);
      extraStores.push(second);
      writers.push(createAuditLog(second, clock));
    }
    const written = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const writer = writers[i % writers.length]!;
        // Every fifth call appends a batch of two, which must stay consecutive.
        return i % 5 === 0
          ? writer.record([
              { actor: 'runner', action: named('batch.a'), details: { i } },
              { actor: 'runner', action: named('batch.b'), details: { i } },
            ])
          : writer.record({ actor: 'runner', action: named('single'), details: { i } });
      }),
    );
    const rows = await chainRows(store);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    for (const batch of written.filter((entries) => entries.length === 2))
      expect(batch[1]!.seq).toBe(batch[0]!.seq + 1);
    expect(rows).toEqual(written.flat().sort((a, b) => a.seq - b.seq));
    expect(new Set(rows.map((r) => JSON.parse(r.details).i)).size).toBe(20);
    expect(await audit.verify()).toMatchObject({ ok: true, entries: 24, headHash: rows[23]!.hash });
  });

  it('export writes every entry as one JSON line, in order, ending at the head', async () => {
    const rows = await fiveEntries();
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    const result = await audit.export(out);
    const lines = Buffer.concat(chunks).toString('utf8').trimEnd().split('\n');
    expect(result).toEqual({ entries: 5, headHash: rows[4]!.hash });
    expect(lines.map((line) => JSON.parse(line))).toEqual(rows);
  });
});

describe('audit chain on sqlite: another process appending', () => {
  it('waits for an append in progress instead of breaking it', async () => {
    const target = sqliteBackend.target() as { kind: 'sqlite'; path: string };
    const store = await openStore(target);
    const other = new SqliteDatabase(target.path);
    try {
      const [first] = await createAuditLog(store, new ManualClock(START)).record({
        actor: 'a',
        action: named('first'),
      });
      // The other process tries to append while this one is between reading the head and writing
      // its entry (the clock is read exactly there). It must find the chain locked, not slip in.
      other.pragma('busy_timeout = 0');
      let otherAppend = 'not tried';
      const racingClock = {
        now() {
          if (otherAppend === 'not tried') {
            const body = {
              seq: 2,
              at: START,
              actor: 'other',
              action: 'racing',
              subject: null,
              details: '{}',
              prev_hash: first!.hash,
            };
            try {
              other
                .prepare(
                  'insert into audit_log (seq, at, actor, action, subject, details, prev_hash, hash) values (?, ?, ?, ?, ?, ?, ?, ?)',
                )
                .run(
                  body.seq,
                  body.at,
                  body.actor,
                  body.action,
                  body.subject,
                  body.details,
                  body.prev_hash,
                  entryHash(body),
                );
              otherAppend = 'inserted';
            } catch (error) {
              otherAppend = (error as { code?: string }).code ?? 'failed';
            }
          }
          return START;
        },
      };
      const [mine] = await createAuditLog(store, racingClock).record({ actor: 'a', action: named('second') });
      expect(otherAppend).toBe('SQLITE_BUSY');
      expect(mine).toMatchObject({ seq: 2, prev_hash: first!.hash });
      expect(await createAuditLog(store, racingClock).verify()).toMatchObject({ ok: true, entries: 2 });
    } finally {
      other.close();
      await store.close();
    }
  });
});

describe('valhalla audit verify (CLI, SQLite file)', () => {
  const sourceTime = new Date(Date.now() - HOUR).toISOString();

  /** init + ingest a small CSV; returns what a test needs to run the CLI and reach the file. */
  async function initializedWithLeads(): Promise<{
    cwd: string;
    env: Record<string, string>;
    dbPath: string;
  }> {
    const cwd = tempDir();
    const dbPath = join(cwd, 'chain.db');
    const env = testEnv(join(cwd, 'data'), { VALHALLA_DATABASE_URL: dbPath });
    expect((await runInProcess(['init'], { env, cwd })).code).toBe(0);
    writeFileSync(
      join(cwd, 'leads.csv'),
      [
        'name,email,score,source_timestamp',
        `Ada Lovelace,ada@example.test,80,${sourceTime}`,
        `Alan Turing,alan@example.test,30,${sourceTime}`,
        `Ada Again,ADA@example.test,70,${sourceTime}`,
        `Bad Row,not-an-email,50,${sourceTime}`,
      ].join('\n'),
    );
    const ingest = await runInProcess(['ingest', 'leads.csv', '--json'], { env, cwd });
    expect(ingest.code).toBe(0);
    expect(JSON.parse(ingest.stdout)).toMatchObject({ read: 4, accepted: 2, duplicate: 1, rejected: 1 });
    return { cwd, env, dbPath };
  }

  function withRawDatabase<T>(dbPath: string, work: (db: SqliteDatabase.Database) => T): T {
    const db = new SqliteDatabase(dbPath);
    try {
      return work(db);
    } finally {
      db.close();
    }
  }

  it('exits 0 and says intact on a good chain; exits 1 naming the first broken entry after an edit', async () => {
    const { cwd, env, dbPath } = await initializedWithLeads();
    const rows = withRawDatabase(dbPath, (db) =>
      db.prepare('select seq, action, hash from audit_log order by seq').all(),
    ) as {
      seq: number;
      action: string;
      hash: string;
    }[];
    expect(rows.map((r) => r.action)).toEqual([
      'system.initialized',
      'ingest.started',
      'ingest.rows',
      'ingest.finished',
    ]);

    const good = await runInProcess(['audit', 'verify'], { env, cwd });
    expect(good.code).toBe(0);
    expect(good.stdout).toContain(`audit chain intact: 4 entries, head ${rows[3]!.hash}`);

    withRawDatabase(dbPath, (db) => {
      db.exec('drop trigger audit_log_no_update');
      db.prepare('update audit_log set details = ? where seq = 3').run(
        '{"accepted":[],"duplicate":0,"read":4,"rejected":4}',
      );
    });

    const broken = await runInProcess(['audit', 'verify'], { env, cwd });
    expect(broken.code).toBe(1);
    expect(broken.stdout).not.toContain('intact');
    expect(broken.stderr).toContain('audit chain BROKEN after 2 good entries: entry 3:');
    expect(broken.stderr).toContain('(the entry was edited)');

    const json = await runInProcess(['audit', 'verify', '--json'], { env, cwd });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      entries: 2,
      firstBreak: { seq: 3, problem: 'hash_mismatch' },
    });
  });

  it('an export verifies offline with scripts/verify-audit-export.mjs, and an edit in it is found', async () => {
    const { cwd, env, dbPath } = await initializedWithLeads();
    const exported = await runInProcess(['audit', 'export', '--out', 'audit.jsonl'], { env, cwd });
    expect(exported.code).toBe(0);
    const head = withRawDatabase(dbPath, (db) =>
      db.prepare('select hash from audit_log order by seq desc limit 1').pluck().get(),
    ) as string;
    const offline = (args: string[]) =>
      spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'verify-audit-export.mjs'), ...args], {
        cwd,
        encoding: 'utf8',
      });

    const intact = offline(['audit.jsonl', head]);
    expect(intact.status).toBe(0);
    expect(intact.stdout).toContain(`intact: 4 entries, head ${head}`);

    const lines = readFileSync(join(cwd, 'audit.jsonl'), 'utf8').trimEnd().split('\n');
    const edited = JSON.parse(lines[1]!);
    edited.actor = 'mallory';
    lines[1] = JSON.stringify(edited);
    writeFileSync(join(cwd, 'edited.jsonl'), `${lines.join('\n')}\n`);
    const broken = offline(['edited.jsonl']);
    expect(broken.status).toBe(1);
    expect(broken.stdout).toContain('BROKEN at line 2 (entry 2): contents do not match the hash');
  });

  it('exits 1 with --expect-head when entries were cut off the end', async () => {
    const { cwd, env, dbPath } = await initializedWithLeads();
    const head = withRawDatabase(dbPath, (db) =>
      db.prepare('select hash from audit_log order by seq desc limit 1').pluck().get(),
    ) as string;
    expect((await runInProcess(['audit', 'verify', '--expect-head', head], { env, cwd })).code).toBe(0);

    withRawDatabase(dbPath, (db) => {
      db.exec('drop trigger audit_log_no_delete');
      db.exec('delete from audit_log where seq = 4');
    });

    expect((await runInProcess(['audit', 'verify'], { env, cwd })).code).toBe(0);
    const cut = await runInProcess(['audit', 'verify', '--expect-head', head], { env, cwd });
    expect(cut.code).toBe(1);
    expect(cut.stderr).toContain(`not at the expected ${head} (entries were cut off the end)`);
  });
});
