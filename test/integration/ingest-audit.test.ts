/**
 * Every row's outcome is in the audit chain: an `ingest.rows` entry per committed transaction lists
 * its accepted leads (lead, line, pseudonym, state, as `acceptedColumns` names them), its duplicates
 * and its rejected rows. Changing or removing one row's outcome in an entry (someone with administrator
 * rights, the append-only triggers out of the way) breaks the chain at that entry: `audit verify` finds it.
 * The real app and store on SQLite and PostgreSQL.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type App, initialize } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const list = await backends();
afterAll(dropTestSchemas);

const NOW = Date.parse('2026-09-01T12:00:00Z');
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface RowsDetails {
  acceptedColumns: string[];
  accepted: [number, number, string, string][];
  duplicates: { line: number; of: number; by: string[] }[];
  rejected: { line: number; field: string; reason: string }[];
}

async function ingested(backend: Backend): Promise<{ app: App; seq: number; details: RowsDetails }> {
  const dir = tempDir();
  const env = testEnv(join(dir, 'data'), { VALHALLA_DATABASE_URL: backend.databaseUrl() });
  const { app } = await initialize(loadConfig({ env, cwd: dir }), { clock: new ManualClock(NOW) });
  cleanups.push(() => app.close());
  const at = '2026-09-01T10:00:00Z';
  const file = join(dir, 'leads.csv');
  writeFileSync(
    file,
    `${[
      'name,email,score,source_timestamp',
      `Ada Lovelace,ada@example.test,80,${at}`,
      `Alan Turing,alan@example.test,30,${at}`,
      `Ada Again,ADA@example.test,70,${at}`,
      `Bad Row,not-an-email,50,${at}`,
    ].join('\n')}\n`,
  );
  expect(await app.ingest({ path: file })).toMatchObject({ read: 4, accepted: 2, duplicate: 1, rejected: 1 });
  const entry = await app.store.db
    .selectFrom('audit_log')
    .select(['seq', 'details'])
    .where('action', '=', 'ingest.rows')
    .executeTakeFirstOrThrow();
  return { app, seq: Number(entry.seq), details: JSON.parse(entry.details) as RowsDetails };
}

/** Rewrite one entry's details as an administrator would: past the append-only triggers. */
async function overwriteDetails(app: App, seq: number, details: RowsDetails): Promise<void> {
  const db = app.store.db;
  if (app.store.dialect === 'sqlite') {
    await sql`drop trigger audit_log_no_update`.execute(db);
  } else {
    await sql`alter table audit_log disable trigger user`.execute(db);
  }
  await sql`update audit_log set details = ${JSON.stringify(details)} where seq = ${seq}`.execute(db);
}

describe.each(list)('ingest outcomes in the audit chain on $name', (backend) => {
  it('lists every row: accepted (lead, line, pseudonym, state), duplicate and rejected', async () => {
    const { app, details } = await ingested(backend);
    expect(details.acceptedColumns).toEqual(['lead', 'line', 'pseudonym', 'state']);
    const leads = await app.store.db
      .selectFrom('leads')
      .select(['id', 'source_line', 'state'])
      .orderBy('id')
      .execute();
    expect(details.accepted.map(([lead, line, , state]) => [lead, line, state])).toEqual(
      leads.map((l) => [Number(l.id), Number(l.source_line), l.state]),
    );
    expect(details.accepted.every(([, , pseudonym]) => /^L-[0-9a-f]+$/.test(pseudonym))).toBe(true);
    expect(details.duplicates.map((d) => [d.line, d.by])).toEqual([[4, ['email']]]);
    expect(details.rejected.map((r) => [r.line, r.field])).toEqual([[5, 'email']]);
    expect((await app.audit.verify()).ok).toBe(true);
  });

  const edits: [string, (d: RowsDetails) => RowsDetails][] = [
    [
      'an accepted lead’s state changed',
      (d) => ({ ...d, accepted: d.accepted.map((a, i) => (i === 1 ? [a[0], a[1], a[2], 'pending'] : a)) }),
    ],
    ['an accepted lead removed', (d) => ({ ...d, accepted: d.accepted.slice(1) })],
    ['a duplicate removed', (d) => ({ ...d, duplicates: [] })],
    ['a rejected row removed', (d) => ({ ...d, rejected: [] })],
    [
      'a rejected row’s reason changed',
      (d) => ({ ...d, rejected: d.rejected.map((r) => ({ ...r, reason: 'ok' })) }),
    ],
  ];

  it.each(edits)('%s: audit verify breaks at that entry', async (_what, edit) => {
    const { app, seq, details } = await ingested(backend);
    const changed = edit(details);
    expect(changed).not.toEqual(details);
    await overwriteDetails(app, seq, changed);
    expect(await app.audit.verify()).toMatchObject({
      ok: false,
      firstBreak: { seq, problem: 'hash_mismatch' },
    });
  });
});
