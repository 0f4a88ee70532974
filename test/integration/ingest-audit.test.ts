/**
 * Every row's outcome is in the audit chain: an `ingest.rows` entry per committed transaction names
 * its accepted leads (`acceptedLeads`: runs of (lead, line), a state letter each, and the SHA-256 of
 * their `lead,line,pseudonym,state` lines), its duplicates and its rejected rows. Changing or removing
 * one row's outcome in an entry (someone with administrator rights, the append-only triggers out of
 * the way) breaks the chain at that entry: `audit verify` finds it. The real app and store on SQLite
 * and PostgreSQL.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type App, initialize } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { leadFromRow } from '../../src/store/leads.js';
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
  read: number;
  accepted: number;
  duplicate: number;
  acceptedLeads: { runs: [number, number, number][]; states: string; sha256: string };
  duplicates: { line: number; of: number; by: string[] }[];
  rejected: number;
  rejectedRows: { line: number; field: string; reason: string }[];
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
      `Grace Hopper,grace@example.test,60,${at}`,
      `Old Lead,old@example.test,90,2026-01-01T00:00:00Z`,
    ].join('\n')}\n`,
  );
  expect(await app.ingest({ path: file })).toMatchObject({ read: 6, accepted: 4, duplicate: 1, rejected: 1 });
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

/** Each state's letter in `acceptedLeads.states`. */
const STATE_LETTERS: Record<string, string> = { pending: 'p', below_threshold: 'b', expired: 'e' };

describe.each(list)('ingest outcomes in the audit chain on $name', (backend) => {
  it('names every row: each accepted lead (lead, line, state, and its pseudonym by the hash), duplicate and rejected', async () => {
    const { app, details } = await ingested(backend);
    const leads = (
      await app.store.db
        .selectFrom('leads')
        .select(['id', 'source_line', 'state', 'dedup_key'])
        .orderBy('id')
        .execute()
    ).map(leadFromRow);
    expect(leads).toHaveLength(4);
    const { runs, states, sha256 } = details.acceptedLeads;
    // A duplicate and a rejected line split the leads into two runs.
    expect(runs).toHaveLength(2);
    const pairs = runs.flatMap(([lead, line, count]) =>
      Array.from({ length: count }, (_, i) => [lead + i, line + i]),
    );
    expect(pairs).toEqual(leads.map((l) => [Number(l.id), Number(l.source_line)]));
    expect(states).toBe('pbpe');
    expect(states).toBe(leads.map((l) => STATE_LETTERS[l.state]).join(''));
    // The hash binds each lead's pseudonym, which its stored dedup key gives back.
    const lines = leads.map((l) => `${l.id},${l.source_line},L-${l.dedup_key.slice(0, 20)},${l.state}\n`);
    expect(sha256).toBe(createHash('sha256').update(lines.join('')).digest('hex'));
    // A few bytes a lead, no row each, and never a value.
    // The counts.
    expect(details).toMatchObject({ read: 6, accepted: 4, duplicate: 1, rejected: 1 });
    expect(details).not.toHaveProperty('acceptedColumns');
    expect(JSON.stringify(details)).not.toMatch(/Lovelace|Turing|Hopper|example\.test|L-[0-9a-f]/);
    expect(details.duplicates.map((d) => [d.line, d.by])).toEqual([[4, ['email']]]);
    expect(details.rejectedRows.map((r) => [r.line, r.field])).toEqual([[5, 'email']]);
    expect((await app.audit.verify()).ok).toBe(true);
  });

  const edits: [string, (d: RowsDetails) => RowsDetails][] = [
    [
      'an accepted lead’s state letter changed',
      // Alan's below_threshold (b) written as pending (p).
      (d) => ({
        ...d,
        acceptedLeads: { ...d.acceptedLeads, states: d.acceptedLeads.states.replace('b', 'p') },
      }),
    ],
    [
      'a run of accepted leads dropped',
      (d) => ({ ...d, acceptedLeads: { ...d.acceptedLeads, runs: d.acceptedLeads.runs.slice(0, 1) } }),
    ],
    [
      'a run of accepted leads shortened',
      (d) => ({
        ...d,
        acceptedLeads: {
          ...d.acceptedLeads,
          runs: d.acceptedLeads.runs.map(([lead, line, count], i) =>
            i === 1 ? [lead, line, count - 1] : [lead, line, count],
          ),
        },
      }),
    ],
    [
      'the accepted leads’ sha256 changed',
      (d) => ({
        ...d,
        acceptedLeads: {
          ...d.acceptedLeads,
          sha256: `${d.acceptedLeads.sha256[0] === '0' ? '1' : '0'}${d.acceptedLeads.sha256.slice(1)}`,
        },
      }),
    ],
    ['a duplicate removed', (d) => ({ ...d, duplicates: [] })],
    ['a rejected row removed', (d) => ({ ...d, rejectedRows: [] })],
    [
      'a rejected row’s reason changed',
      (d) => ({ ...d, rejectedRows: d.rejectedRows.map((r) => ({ ...r, reason: 'ok' })) }),
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
