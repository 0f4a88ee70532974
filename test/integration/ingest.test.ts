import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { type App, initialize } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import {
  IngestFileError,
  type IngestFileErrorCode,
  type IngestSummary,
  LEAD_FIELDS,
  validateLead,
} from '../../src/ingest/index.js';
import { createPseudonymizer } from '../../src/pii/index.js';
import { getIngestRun } from '../../src/store/index.js';
import { identityHex, keyHex } from '../../src/store/leads.js';
import { generateLeads, writeGeneratedLeads } from '../../src/synthetic/index.js';
import { type Backend, backends, dropTestSchemas, sqliteBackend } from '../support/backends.js';
import { BIN, runInProcess, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { DAY, HOUR } from '../support/world.js';

const NOW_ISO = '2026-11-20T12:00:00Z';
const NOW = Date.parse(NOW_ISO);
const HEADER = LEAD_FIELDS.join(',');
const ago = (ms: number, from = NOW) => new Date(from - ms).toISOString();

type Field = (typeof LEAD_FIELDS)[number];
type Fields = Partial<Record<Field, string | number>>;

/** A valid lead numbered `i` (unique e-mail and external id), fresh at NOW, with overrides. */
function fields(i: number, overrides: Fields = {}): Record<Field, string | number> {
  return {
    external_id: `EXT-${i}`,
    name: `Person ${i}`,
    email: `person${i}@example.com`,
    phone: `+1 555 010 ${String(i).padStart(4, '0')}`,
    company: `Company ${i}`,
    score: 70,
    source_timestamp: ago(2 * HOUR),
    value: 100,
    ...overrides,
  };
}
const csvRow = (i: number, overrides: Fields = {}) =>
  LEAD_FIELDS.map((f) => String(fields(i, overrides)[f])).join(',');
const jsonRow = (i: number, overrides: Fields = {}) => JSON.stringify(fields(i, overrides));
const csv = (...rows: string[]) => `${[HEADER, ...rows].join('\n')}\n`;

const BACKENDS = await backends();
afterAll(async () => {
  await dropTestSchemas();
});

const opened: App[] = [];
afterEach(async () => {
  for (const app of opened.splice(0)) await app.close();
});

interface Setup {
  dir: string;
  url: string;
  env: Record<string, string>;
  app: App;
  open(): Promise<App>;
  file(name: string, content: string | Buffer): string;
}

async function setup(backend: Backend, extraEnv: Record<string, string> = {}): Promise<Setup> {
  const dir = tempDir();
  const url = backend.databaseUrl();
  const env = testEnv(join(dir, 'data'), { VALHALLA_DATABASE_URL: url, ...extraEnv });
  const open = async () => {
    const { app } = await initialize(loadConfig({ env, cwd: dir }), { clock: new ManualClock(NOW_ISO) });
    opened.push(app);
    return app;
  };
  const file = (name: string, content: string | Buffer) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  return { dir, url, env, app: await open(), open, file };
}

interface RejectLine {
  run: number;
  line: number;
  problems: { field: string; message: string }[];
}

/**
 * Invariant 8 for one completed run: every data row of the file is read, and ends in exactly one
 * place (a lead of this run, a duplicate or a rejection), the run's counts agree with the summary
 * and the store, and the rejects file lists exactly the rejected and duplicate lines (a duplicate
 * under the identity that matched, with its reason).
 */
async function expectAccounted(app: App, summary: IngestSummary, dataRows: number) {
  expect(summary.read).toBe(dataRows);
  expect(summary.accepted + summary.duplicate + summary.rejected).toBe(summary.read);
  expect(summary.states.pending + summary.states.below_threshold + summary.states.expired).toBe(
    summary.accepted,
  );

  const db = app.store.db;
  const run = await getIngestRun(db, summary.runId);
  expect(run).toMatchObject({
    status: 'completed',
    rows_read: summary.read,
    accepted: summary.accepted,
    duplicate: summary.duplicate,
    rejected: summary.rejected,
    error: null,
    file_sha256: summary.fileSha256,
  });
  const leads = await db
    .selectFrom('leads')
    .selectAll()
    .where('run_id', '=', summary.runId)
    .orderBy('source_line')
    .execute();
  const outcomes = await db
    .selectFrom('ingest_outcomes')
    .selectAll()
    .where('run_id', '=', summary.runId)
    .orderBy('line')
    .execute();
  expect(leads).toHaveLength(summary.accepted);
  for (const state of ['pending', 'below_threshold', 'expired'] as const) {
    expect(leads.filter((l) => l.state === state)).toHaveLength(summary.states[state]);
  }
  const duplicates = outcomes.filter((o) => o.outcome === 'duplicate');
  const rejected = outcomes.filter((o) => o.outcome === 'rejected');
  expect(duplicates).toHaveLength(summary.duplicate);
  expect(rejected).toHaveLength(summary.rejected);
  for (const d of duplicates) expect(d.lead_id).not.toBeNull();
  for (const r of rejected) expect(r.reason.length).toBeGreaterThan(0);
  // Exactly one state per row: no line is both a lead and an outcome, or two outcomes.
  const lines = [...leads.map((l) => l.source_line), ...outcomes.map((o) => o.line)];
  expect(new Set(lines).size).toBe(summary.read);

  let rejects: RejectLine[] = [];
  let duplicateLines: RejectLine[] = [];
  if (summary.rejected + summary.duplicate === 0) {
    expect(summary.rejectsFile).toBeNull();
  } else {
    expect(summary.rejectsFile).not.toBeNull();
    const lines = readFileSync(summary.rejectsFile!, 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as RejectLine);
    expect(lines.map((r) => r.line)).toEqual(outcomes.map((o) => o.line));
    for (const r of lines) {
      expect(r.run).toBe(summary.runId);
      expect(r.problems.length).toBeGreaterThan(0);
      const outcome = outcomes.find((o) => o.line === r.line)!;
      expect(outcome.field).toBe(r.problems[0]!.field);
      if (outcome.outcome === 'duplicate')
        expect(r.problems).toEqual([{ field: outcome.field, message: outcome.reason }]);
    }
    rejects = lines.filter((r) => rejected.some((o) => o.line === r.line));
    duplicateLines = lines.filter((r) => duplicates.some((o) => o.line === r.line));
  }
  return { run: run!, leads, outcomes, duplicates, rejected, rejects, duplicateLines };
}

const stateByLine = (leads: { source_line: number; state: string }[]) =>
  Object.fromEntries(leads.map((l) => [l.source_line, l.state]));
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

async function ingestError(app: App, options: Parameters<App['ingest']>[0]): Promise<IngestFileError> {
  const error = await app.ingest(options).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(IngestFileError);
  return error as IngestFileError;
}

describe.each(BACKENDS.map((b) => [b.name, b] as const))('ingest on %s', (_name, backend) => {
  describe('row outcomes', () => {
    it('ends every row in exactly one state: pending, expired, below threshold, duplicate or rejected', async () => {
      const { app, file } = await setup(backend);
      const path = file(
        'leads.csv',
        csv(
          csvRow(1), // line 2: pending
          csvRow(2, { source_timestamp: ago(20 * DAY) }), // 3: expired
          csvRow(3, { score: 39 }), // 4: below threshold
          csvRow(4, { email: '  PERSON1@Example.COM ' }), // 5: duplicate of line 2
          csvRow(5, { email: 'person5-at-example.com' }), // 6: rejected
          csvRow(6, { score: 40, source_timestamp: ago(14 * DAY - HOUR) }), // 7: pending (both edges)
          csvRow(7, { score: 101, phone: 'call 555 NOW' }), // 8: rejected, two problems
          csvRow(8, { source_timestamp: ago(14 * DAY + 60_000) }), // 9: expired (just over 14 days)
          csvRow(9, { score: 10, source_timestamp: ago(30 * DAY) }), // 10: below threshold (score first)
        ),
      );
      const summary = await app.ingest({ path });
      expect(summary).toMatchObject({
        source: 'leads.csv',
        format: 'csv',
        read: 9,
        accepted: 6,
        states: { pending: 2, below_threshold: 2, expired: 2 },
        duplicate: 1,
        rejected: 2,
        ignoredColumns: [],
        fileSha256: sha256(path),
      });
      const { leads, duplicates, rejected, rejects } = await expectAccounted(app, summary, 9);
      expect(stateByLine(leads)).toEqual({
        2: 'pending',
        3: 'expired',
        4: 'below_threshold',
        7: 'pending',
        9: 'expired',
        10: 'below_threshold',
      });
      const first = leads.find((l) => l.source_line === 2)!;
      expect(first).toMatchObject({
        email: 'person1@example.com',
        name: 'Person 1',
        phone: '15550100001',
        score: 70,
        state_reason: null,
      });
      expect(leads.find((l) => l.source_line === 3)!.state_reason).toBe('older than 14 days');
      expect(leads.find((l) => l.source_line === 4)!.state_reason).toBe('score 39 is below 40');

      expect(duplicates).toEqual([
        expect.objectContaining({
          line: 5,
          field: 'email',
          lead_id: first.id,
          reason: `duplicate: e-mail matches line 2 of this file (lead ${first.id})`,
        }),
      ]);
      expect(rejected.map((r) => [r.line, r.field])).toEqual([
        [6, 'email'],
        [8, 'phone'],
      ]);
      expect(rejected[0]!.reason).toBe('email: is not a valid e-mail address');
      expect(rejected[1]!.reason).toBe(
        'phone: may hold only digits, spaces and + ( ) - . /; score: must be a whole number from 0 to 100',
      );
      expect(rejects[1]!.problems).toEqual([
        { field: 'phone', message: 'may hold only digits, spaces and + ( ) - . /' },
        { field: 'score', message: 'must be a whole number from 0 to 100' },
      ]);
      // Reasons never carry the values.
      const text = JSON.stringify([rejected, rejects]);
      expect(text).not.toContain('person5-at-example');
      expect(text).not.toContain('NOW');
    });

    it('counts a row already stored by an earlier file as a duplicate of that lead', async () => {
      const { app, file } = await setup(backend);
      const first = await app.ingest({ path: file('a.csv', csv(csvRow(1), csvRow(2))) });
      await expectAccounted(app, first, 2);
      const second = await app.ingest({
        path: file('b.csv', csv(csvRow(3), csvRow(10, { email: ' Person2@EXAMPLE.com' }))),
      });
      const { duplicates, leads } = await expectAccounted(app, second, 2);
      expect(second).toMatchObject({ accepted: 1, duplicate: 1, rejected: 0 });
      const original = await app.store.db
        .selectFrom('leads')
        .selectAll()
        .where('email', '=', 'person2@example.com')
        .executeTakeFirstOrThrow();
      expect(original.run_id).toBe(first.runId);
      expect(duplicates).toEqual([
        expect.objectContaining({
          line: 3,
          lead_id: original.id,
          field: 'email',
          reason: `duplicate: e-mail matches lead ${original.id}, stored by ingest run ${first.runId}`,
        }),
      ]);
      expect(leads.map((l) => l.email)).toEqual(['person3@example.com']);
    });

    it('adds nothing when the same file is ingested again', async () => {
      const { app, file } = await setup(backend);
      const path = file(
        'leads.csv',
        csv(
          csvRow(1),
          csvRow(2, { score: 5 }),
          csvRow(3, { source_timestamp: ago(30 * DAY) }),
          csvRow(4, { email: 'PERSON1@example.com' }),
          csvRow(5, { name: '' }),
        ),
      );
      const first = await app.ingest({ path });
      await expectAccounted(app, first, 5);
      expect(first).toMatchObject({ accepted: 3, duplicate: 1, rejected: 1 });
      const before = await app.status();

      const again = await app.ingest({ path });
      const { duplicates } = await expectAccounted(app, again, 5);
      expect(again).toMatchObject({
        accepted: 0,
        states: { pending: 0, below_threshold: 0, expired: 0 },
        duplicate: 4,
        rejected: 1,
      });
      expect(duplicates.map((d) => d.line)).toEqual([2, 3, 4, 5]);
      const after = await app.status();
      expect(after.leads).toEqual(before.leads);
      expect(after.ingest).toMatchObject({ runs: 2, read: 10, accepted: 3, duplicate: 5, rejected: 2 });
    });

    it('keeps duplicates apart across chunks and audits each chunk, with a chain that verifies', async () => {
      const { app, file } = await setup(backend);
      const rows = [1, 2, 3, 4, 5, 6, 7].map((i) => csvRow(i));
      rows.push(
        csvRow(20, { email: 'person1@EXAMPLE.com' }),
        csvRow(21, { email: 'person6@example.com' }),
        csvRow(22, { score: 'x' }),
      );
      const summary = await app.ingest({ path: file('chunks.csv', csv(...rows)), chunkSize: 3 });
      const { duplicates, leads } = await expectAccounted(app, summary, 10);
      const id = (line: number) => leads.find((l) => l.source_line === line)!.id;
      expect(duplicates.map((d) => [d.line, d.reason])).toEqual([
        [9, `duplicate: e-mail matches line 2 of this file (lead ${id(2)})`],
        [10, `duplicate: e-mail matches line 7 of this file (lead ${id(7)})`],
      ]);
      const audit = await app.store.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
      const actions = audit.map((a) => a.action);
      expect(actions).toEqual([
        'system.initialized',
        'ingest.started',
        'ingest.rows',
        'ingest.rows',
        'ingest.rows',
        'ingest.rows',
        'ingest.finished',
      ]);
      const rowEntries = audit
        .filter((a) => a.action === 'ingest.rows')
        .map((a) => JSON.parse(a.details) as { lines: number[]; read: number });
      expect(rowEntries.map((d) => d.lines)).toEqual([
        [2, 4],
        [5, 7],
        [8, 10],
        [11, 11],
      ]);
      expect(rowEntries.reduce((n, d) => n + d.read, 0)).toBe(10);
      expect((await app.audit.verify()).ok).toBe(true);
    });

    it('never writes PII to the audit chain, the outcomes, the rejects file or the log', async () => {
      const { app, file, env } = await setup(backend);
      const secrets = {
        name: 'Zebediah Quux',
        email: 'zebediah.quux@secret-mail.test',
        phone: '+1 555 987 6543',
        company: 'Quuxcorp Hidden',
      };
      const path = file(
        'pii.csv',
        csv(
          csvRow(1, secrets),
          csvRow(2, { ...secrets, email: 'ZEBEDIAH.QUUX@secret-mail.test' }),
          csvRow(3, { ...secrets, email: 'zebediah.quux at secret-mail.test', score: 'zebediah' }),
          `EXT-4,"${secrets.name}",zq4@secret-mail.test,"${secrets.phone}"`,
        ),
      );
      const summary = await app.ingest({ path });
      await expectAccounted(app, summary, 4);
      expect(summary).toMatchObject({ accepted: 1, duplicate: 1, rejected: 2 });
      const db = app.store.db;
      const stored = [
        JSON.stringify(await db.selectFrom('audit_log').selectAll().execute()),
        JSON.stringify(await db.selectFrom('ingest_outcomes').selectAll().execute()),
        JSON.stringify(await db.selectFrom('ingest_runs').selectAll().execute()),
        readFileSync(summary.rejectsFile!, 'utf8'),
        readFileSync(env.VALHALLA_LOG_FILE!, 'utf8'),
      ];
      expect(stored[0]).toContain('ingest.finished');
      expect(stored[4]).toContain('ingest finished');
      for (const text of stored) {
        for (const secret of [
          'Zebediah',
          'zebediah',
          'ZEBEDIAH',
          'Quux',
          'quux',
          'secret-mail',
          '9876543',
          'zq4',
        ]) {
          expect(text).not.toContain(secret);
        }
      }
    });

    it('keys leads by external_id when VALHALLA_DEDUP_KEY=external_id, rejects rows without one, and still dedups by e-mail', async () => {
      const { app, file } = await setup(backend, { VALHALLA_DEDUP_KEY: 'external_id' });
      const summary = await app.ingest({
        path: file(
          'by-id.csv',
          csv(
            csvRow(1), // 2: accepted
            csvRow(2), // 3: accepted
            csvRow(3, { email: 'person1@example.com' }), // 4: duplicate of line 2: same e-mail, another id
            csvRow(4, { external_id: 'EXT-1' }), // 5: duplicate of line 2: same id, another e-mail
            csvRow(5, { external_id: '' }), // 6: rejected: no id
            csvRow(6, { external_id: '  EXT-2 ' }), // 7: duplicate of line 3 (trimmed)
            csvRow(7, { external_id: 'ext-1' }), // 8: accepted: ids are case-sensitive
            csvRow(8, { external_id: 'EXT-2', email: 'PERSON1@example.com' }), // 9: both, two leads
            csvRow(9, { external_id: 'EXT-1', email: 'person1@example.com' }), // 10: both, one lead
          ),
        ),
      });
      const { leads, duplicates, rejected } = await expectAccounted(app, summary, 9);
      expect(summary).toMatchObject({ accepted: 3, duplicate: 5, rejected: 1 });
      expect(leads.map((l) => [l.source_line, l.external_id, l.email])).toEqual([
        [2, 'EXT-1', 'person1@example.com'],
        [3, 'EXT-2', 'person2@example.com'],
        [8, 'ext-1', 'person7@example.com'],
      ]);
      const [one, two] = leads.map((l) => l.id);
      // The rule's identity comes first in a reason naming both.
      expect(duplicates.map((d) => [d.line, d.field, d.lead_id, d.reason])).toEqual([
        [4, 'email', one, `duplicate: e-mail matches line 2 of this file (lead ${one})`],
        [5, 'external_id', one, `duplicate: external id matches line 2 of this file (lead ${one})`],
        [7, 'external_id', two, `duplicate: external id matches line 3 of this file (lead ${two})`],
        [
          9,
          'external_id',
          two,
          `duplicate: external id matches line 3 of this file (lead ${two}); e-mail matches line 2 of this file (lead ${one})`,
        ],
        [10, 'external_id', one, `duplicate: external id and e-mail match line 2 of this file (lead ${one})`],
      ]);
      expect(rejected.map((r) => [r.line, r.field, r.reason])).toEqual([
        [6, 'external_id', 'external_id: is required when VALHALLA_DEDUP_KEY=external_id'],
      ]);
      // The primary key (and so the pseudonym) is the external id's; the e-mail's is kept beside it.
      const keys = createPseudonymizer(app.config.pseudonymSecret!);
      expect(keyHex(leads[0]!.dedup_key)).toBe(keys.dedupKey('external_id', 'EXT-1'));
      const identities = await app.store.db
        .selectFrom('lead_identities')
        .select('key')
        .where('lead_id', '=', leads[0]!.id)
        .execute();
      expect(identities.map((i) => keyHex(i.key)).sort()).toEqual(
        [keys.dedupKey('external_id', 'EXT-1'), keys.dedupKey('email', 'person1@example.com')]
          .map(identityHex)
          .sort(),
      );
    });
  });

  describe('CSV shapes', () => {
    it('reads quoted fields with commas, doubled quotes and line breaks, numbering rows by their first line', async () => {
      const { app, file } = await setup(backend);
      const ts = ago(HOUR);
      const text = [
        `${HEADER},notes`,
        `EXT-1,"Doe, Jane",jane@example.com,,"Acme, ""The Best"" Inc.",80,${ts},1000,plain`, // 2
        `EXT-2,Sam Roe,sam@example.com,,Roe Ltd,75,${ts},,"first line\nsecond, with a comma\nthird"`, // 3-5
        `EXT-3,"Line\nBreak",lb@example.com,,,60,${ts},,`, // 6-7: a line break inside the name
        `"EXT-4","Last Person","last@example.com","","","55","${ts}","",""`, // 8: every field quoted
        '', // 9: blank
        `EXT-5,Final,final@example.com,,,65,${ts},,"ends at EOF\nwithout a newline"`, // 10-11
      ].join('\n');
      const summary = await app.ingest({ path: file('quoted.csv', text) });
      const { leads, rejected } = await expectAccounted(app, summary, 5);
      expect(summary.ignoredColumns).toEqual(['notes']);
      expect(leads.map((l) => [l.source_line, l.name, l.company])).toEqual([
        [2, 'Doe, Jane', 'Acme, "The Best" Inc.'],
        [3, 'Sam Roe', 'Roe Ltd'],
        [8, 'Last Person', null],
        [10, 'Final', null],
      ]);
      expect(rejected.map((r) => [r.line, r.reason])).toEqual([[6, 'name: contains control characters']]);
    });

    it('reads a file with a byte-order mark and CRLF line endings', async () => {
      const { app, file } = await setup(backend);
      const text = `\uFEFF${[HEADER, csvRow(1), csvRow(2, { score: 12 }), '', csvRow(3), `EXT-4,"Multi\r\nLine",m@example.com,,,50,${ago(HOUR)},`, csvRow(5)].join('\r\n')}\r\n`;
      const summary = await app.ingest({ path: file('bom-crlf.csv', text) });
      const { leads, rejected } = await expectAccounted(app, summary, 5);
      expect(stateByLine(leads)).toEqual({ 2: 'pending', 3: 'below_threshold', 5: 'pending', 8: 'pending' });
      expect(leads.map((l) => l.value)).toEqual([100, 100, 100, 100]);
      expect(rejected.map((r) => [r.line, r.field])).toEqual([[6, 'name']]);
    });

    it('reads a file with old Mac (CR) line endings', async () => {
      const { app, file } = await setup(backend);
      const summary = await app.ingest({
        path: file('cr.csv', `${[HEADER, csvRow(1), csvRow(2)].join('\r')}\r`),
      });
      const { leads } = await expectAccounted(app, summary, 2);
      expect(leads.map((l) => l.source_line)).toEqual([2, 3]);
    });

    it('ignores unknown columns, reports them, and maps columns by name in any order and case', async () => {
      const { app, file } = await setup(backend);
      const ts = ago(HOUR);
      const text = [
        ` Score ,EMAIL,Notes,name,Source_Timestamp,CRM id`,
        `90,a@example.com,call back,Ann,${ts},77`,
        `45,b@example.com,,Bob,${ts},78`,
      ].join('\n');
      const summary = await app.ingest({ path: file('extra.csv', text) });
      const { leads } = await expectAccounted(app, summary, 2);
      expect(summary.ignoredColumns).toEqual(['notes', 'crm id']);
      expect(leads.map((l) => [l.name, l.email, l.score, l.external_id, l.value])).toEqual([
        ['Ann', 'a@example.com', 90, null, null],
        ['Bob', 'b@example.com', 45, null, null],
      ]);
    });

    it('rejects a row with the wrong number of fields and keeps the others', async () => {
      const { app, file } = await setup(backend);
      const summary = await app.ingest({
        path: file(
          'count.csv',
          csv(
            csvRow(1),
            csvRow(2).split(',').slice(0, 7).join(','),
            csvRow(3),
            `${csvRow(4)},extra`,
            'lonely',
            csvRow(5),
          ),
        ),
      });
      const { leads, rejected } = await expectAccounted(app, summary, 6);
      expect(leads.map((l) => l.source_line)).toEqual([2, 4, 7]);
      expect(rejected.map((r) => [r.line, r.field, r.reason])).toEqual([
        [3, 'row', 'expected 8 fields as in the header, found 7'],
        [5, 'row', 'expected 8 fields as in the header, found 9'],
        [6, 'row', 'expected 8 fields as in the header, found 1'],
      ]);
    });

    const ts = ago(HOUR);
    const goodAfter = Array.from({ length: 5 }, (_, k) => csvRow(100 + k));
    it.each<[string, string, string]>([
      [
        'an unclosed quote',
        `EXT-3,"Unclosed,broken@example.com,,,50,${ts},`,
        'broken quoting: a quoted field is never closed',
      ],
      [
        'text after a closing quote',
        `EXT-3,"Jane"x,broken@example.com,,,50,${ts},`,
        'broken quoting: text after a closing quote',
      ],
      [
        'a quote inside an unquoted field',
        `EXT-3,Ja"ne,broken@example.com,,,50,${ts},`,
        'broken quoting: a quote inside an unquoted field',
      ],
    ])('rejects one row with %s, keeping the rows before and after it', async (_label, broken, reason) => {
      const { app, file } = await setup(backend);
      // A later row with quotes must not close the broken one and swallow the rows between.
      const quotedLater = `EXT-200,"Doe, John",john@example.com,,"Doe, Inc.",60,${ts},`;
      const summary = await app.ingest({
        path: file('broken.csv', csv(csvRow(1), broken, ...goodAfter, quotedLater, csvRow(2))),
      });
      const { leads, rejected, rejects } = await expectAccounted(app, summary, 9);
      expect(rejected.map((r) => [r.line, r.field, r.reason])).toEqual([[3, 'row', reason]]);
      expect(rejects).toEqual([
        { run: summary.runId, line: 3, problems: [{ field: 'row', message: reason }] },
      ]);
      expect(leads.map((l) => l.source_line)).toEqual([2, 4, 5, 6, 7, 8, 9, 10]);
      expect(leads.find((l) => l.source_line === 9)!.name).toBe('Doe, John');
    });

    it('keeps the rest of the file after an unclosed quote with more than 64 KiB after it', async () => {
      const { app, file } = await setup(backend);
      const rest = Array.from({ length: 2_500 }, (_, k) => csvRow(1_000 + k));
      const text = csv(csvRow(1), `EXT-3,"never closed,x@example.com,,,50,${ago(HOUR)},`, ...rest);
      expect(text.length).toBeGreaterThan(3 * 65_536);
      const summary = await app.ingest({ path: file('swallow.csv', text), chunkSize: 400 });
      const { rejected } = await expectAccounted(app, summary, 2_502);
      expect(summary).toMatchObject({ accepted: 2_501, rejected: 1 });
      expect(rejected.map((r) => [r.line, r.reason])).toEqual([
        [3, 'broken quoting: a quoted field is not closed within 65536 characters'],
      ]);
    });

    it('rejects a row whose quote is still open at the end of the file, keeping the rows after it', async () => {
      const { app, file } = await setup(backend);
      const summary = await app.ingest({
        path: file(
          'open.csv',
          `${HEADER}\n${csvRow(1)}\nEXT-2,"open,x@example.com\n${csvRow(3)}\n${csvRow(4)}`,
        ),
      });
      const { leads, rejected } = await expectAccounted(app, summary, 4);
      expect(leads.map((l) => l.source_line)).toEqual([2, 4, 5]);
      expect(rejected.map((r) => [r.line, r.reason])).toEqual([
        [3, 'broken quoting: a quoted field is never closed'],
      ]);
    });

    it('rejects a broken last row without a final newline', async () => {
      const { app, file } = await setup(backend);
      const summary = await app.ingest({ path: file('last.csv', `${HEADER}\n${csvRow(1)}\n"EXT-2,half`) });
      const { rejected } = await expectAccounted(app, summary, 2);
      expect(rejected.map((r) => [r.line, r.reason])).toEqual([
        [3, 'broken quoting: a quoted field is never closed'],
      ]);
    });

    it('rejects a row over 64 KiB and keeps the rows around it', async () => {
      const { app, file } = await setup(backend);
      const summary = await app.ingest({
        path: file(
          'long.csv',
          csv(
            csvRow(1),
            csvRow(2, { company: 'c'.repeat(70_000) }),
            csvRow(3, { company: 'd'.repeat(300_000) }),
            csvRow(4),
          ),
        ),
      });
      const { leads, rejected } = await expectAccounted(app, summary, 4);
      expect(leads.map((l) => l.source_line)).toEqual([2, 5]);
      expect(rejected.map((r) => [r.line, r.reason])).toEqual([
        [3, 'row longer than 65536 characters'],
        [4, 'row longer than 65536 characters'],
      ]);
    });

    it('accepts a file with a header and no rows', async () => {
      const { app, file } = await setup(backend);
      const summary = await app.ingest({ path: file('header-only.csv', `${HEADER}\n\n`) });
      await expectAccounted(app, summary, 0);
    });

    it('writes the rejects file where --rejects says', async () => {
      const { dir, env, file, open } = await setup(backend);
      const path = file('r.csv', csv(csvRow(1, { score: 'x' }), csvRow(2, { email: 'nope' })));
      const result = await runInProcess(['ingest', path, '--rejects', 'out/rejected.jsonl'], {
        env,
        cwd: dir,
      });
      expect(result.code).toBe(0);
      const rejectsPath = join(dir, 'out', 'rejected.jsonl');
      expect(result.stdout).toContain(`rejected and duplicate rows (line, field, reason): ${rejectsPath}\n`);
      const lines = readFileSync(rejectsPath, 'utf8')
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as RejectLine);
      expect(lines.map((l) => [l.line, l.problems[0]!.field])).toEqual([
        [2, 'score'],
        [3, 'email'],
      ]);
      expect(statSync(rejectsPath).mode & 0o777).toBe(0o600);
      const app = await open();
      expect(
        (await app.store.db.selectFrom('ingest_outcomes').select('line').execute()).map((o) => o.line).sort(),
      ).toEqual([2, 3]);
    });

    it('fails the run, not the process, when the rejects file cannot be written', async () => {
      const { app, dir, env, file } = await setup(backend);
      const rejectsPath = join(dir, 'a-folder');
      mkdirSync(rejectsPath);
      const path = file('r.csv', csv(csvRow(1), csvRow(2, { score: 'x' }), csvRow(3)));
      const error = await ingestError(app, { path, rejectsPath });
      expect(error.code).toBe('REJECTS_UNWRITABLE');
      expect(error.message).toBe(`${rejectsPath}: cannot write the rejects file: EISDIR`);
      const runs = await app.store.db.selectFrom('ingest_runs').selectAll().execute();
      expect(runs).toEqual([
        expect.objectContaining({
          status: 'failed',
          error: error.message,
          rows_read: 3,
          accepted: 2,
          rejected: 1,
        }),
      ]);
      // The rows were committed before the copy failed: the store's outcome is the record.
      const outcomes = await app.store.db.selectFrom('ingest_outcomes').selectAll().execute();
      expect(outcomes.map((o) => [o.line, o.outcome])).toEqual([[3, 'rejected']]);
      const failed = await app.store.db
        .selectFrom('audit_log')
        .select('details')
        .where('action', '=', 'ingest.failed')
        .execute();
      expect(failed).toHaveLength(1);

      // The CLI looks before it reads: a --rejects that is no regular file is refused before any chunk.
      const cli = await runInProcess(['ingest', path, '--rejects', rejectsPath], { env, cwd: dir });
      expect([cli.code, cli.stderr]).toEqual([
        1,
        `valhalla: --rejects ${rejectsPath} is not a regular file: refused\n`,
      ]);
    });
  });

  describe('JSONL shapes', () => {
    it('rejects non-objects, invalid JSON and over-long lines, skips blank lines, keeps the rest', async () => {
      const { app, file } = await setup(backend);
      const lines = [
        jsonRow(1), // 1
        '', // 2: blank
        '[1,2,3]', // 3
        '{"name": "Broken", ', // 4
        '42', // 5
        'null', // 6
        '   ', // 7: blank
        jsonRow(2, { company: 'x'.repeat(70_000) }), // 8: over 64 KiB
        `${jsonRow(3)}\r`, // 9: CRLF
        jsonRow(4, { score: 'high' }), // 10
        '"just a string"', // 11
        jsonRow(5, { email: 'PERSON1@example.com' }), // 12: duplicate of line 1
        jsonRow(6), // 13, no final newline
      ];
      const path = file('leads.jsonl', `\uFEFF${lines.join('\n')}`);
      const summary = await app.ingest({ path });
      expect(summary.format).toBe('jsonl');
      const { leads, rejected, duplicates } = await expectAccounted(app, summary, 11);
      expect(leads.map((l) => l.source_line)).toEqual([1, 9, 13]);
      expect(duplicates.map((d) => d.line)).toEqual([12]);
      expect(rejected.map((r) => [r.line, r.field, r.reason])).toEqual([
        [3, 'row', 'not a JSON object'],
        [4, 'row', 'not valid JSON'],
        [5, 'row', 'not a JSON object'],
        [6, 'row', 'not a JSON object'],
        [8, 'row', 'row longer than 65536 characters'],
        [10, 'score', 'score: must be a whole number from 0 to 100'],
        [11, 'row', 'not a JSON object'],
      ]);
    });

    it('skips a line far over 64 KiB without holding it, and keeps counting lines after it', async () => {
      const { app, file } = await setup(backend);
      const huge = jsonRow(2, { company: 'y'.repeat(400_000) });
      const summary = await app.ingest({
        path: file('huge.ndjson', [jsonRow(1), huge, jsonRow(3), huge, jsonRow(4)].join('\n')),
      });
      const { leads, rejected } = await expectAccounted(app, summary, 5);
      expect(leads.map((l) => l.source_line)).toEqual([1, 3, 5]);
      expect(rejected.map((r) => [r.line, r.reason])).toEqual([
        [2, 'row longer than 65536 characters'],
        [4, 'row longer than 65536 characters'],
      ]);
    });

    it('reads epoch-millisecond timestamps and numbers', async () => {
      const { app, file } = await setup(backend);
      const summary = await app.ingest({
        path: file(
          'numbers.jsonl',
          `${JSON.stringify({ name: 'N', email: 'n@example.com', score: 41, source_timestamp: NOW - HOUR, value: 12.5 })}\n`,
        ),
      });
      const { leads } = await expectAccounted(app, summary, 1);
      expect(leads[0]).toMatchObject({ score: 41, source_ts: NOW - HOUR, value: 12.5, state: 'pending' });
    });

    it('sniffs JSONL without an extension', async () => {
      const { app, file } = await setup(backend);
      const summary = await app.ingest({ path: file('leads-export', `${jsonRow(1)}\n${jsonRow(2)}\n`) });
      expect(summary.format).toBe('jsonl');
      await expectAccounted(app, summary, 2);
    });
  });

  describe('standard input', () => {
    it('ingests CSV and JSONL from - through the CLI', async () => {
      const { dir, env, open } = await setup(backend);
      const now = Date.now();
      const csvText = csv(
        csvRow(1, { source_timestamp: ago(HOUR, now) }),
        csvRow(2, { source_timestamp: ago(HOUR, now), score: 'bad' }),
        csvRow(3, { source_timestamp: ago(HOUR, now) }),
      );
      const first = await runInProcess(['ingest', '-', '--json'], { env, cwd: dir, stdin: csvText });
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      const summary = JSON.parse(first.stdout) as IngestSummary;
      expect(summary).toMatchObject({
        source: '(standard input)',
        format: 'csv',
        read: 3,
        accepted: 2,
        rejected: 1,
        duplicate: 0,
      });
      expect(summary.fileSha256).toBe(createHash('sha256').update(csvText).digest('hex'));

      const jsonText = `${jsonRow(1, { source_timestamp: ago(HOUR, now) })}\n${jsonRow(4, { source_timestamp: ago(HOUR, now) })}\n`;
      const second = await runInProcess(['ingest', '-'], { env, cwd: dir, stdin: jsonText });
      expect(second.code).toBe(0);
      expect(second.stdout).toMatch(
        /^ingest run \d+ \(\(standard input\), jsonl\): read 2, accepted 1 \(pending 1, below threshold 0, expired 0\), duplicate 1, rejected 0\nrejected and duplicate rows \(line, field, reason\): .*ingest-run-\d+\.jsonl\n$/,
      );

      const app = await open();
      const runs = await app.store.db.selectFrom('ingest_runs').selectAll().orderBy('id').execute();
      expect(runs.map((r) => [r.source, r.format, r.status, r.rows_read])).toEqual([
        ['(standard input)', 'csv', 'completed', 3],
        ['(standard input)', 'jsonl', 'completed', 2],
      ]);
      const leads = await app.store.db.selectFrom('leads').select(['email']).orderBy('id').execute();
      expect(leads.map((l) => l.email)).toEqual([
        'person1@example.com',
        'person3@example.com',
        'person4@example.com',
      ]);
    });

    it('fails on empty standard input', async () => {
      const { dir, env } = await setup(backend);
      const result = await runInProcess(['ingest', '-'], { env, cwd: dir, stdin: '' });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe('valhalla: (standard input): no data (no header, no rows)\n');
    });
  });

  describe('file-level errors', () => {
    const cases: Array<{
      label: string;
      name: string;
      content?: string | Buffer;
      dir?: true;
      code: IngestFileErrorCode;
      message: string;
      failedRun: boolean;
    }> = [
      {
        label: 'a missing file',
        name: 'missing.csv',
        code: 'FILE_NOT_FOUND',
        message: 'no such file',
        failedRun: false,
      },
      {
        label: 'a directory',
        name: 'folder.csv',
        dir: true,
        code: 'NOT_A_FILE',
        message: 'not a regular file',
        failedRun: false,
      },
      {
        label: 'an empty file',
        name: 'empty.csv',
        content: '',
        code: 'EMPTY_FILE',
        message: 'the file is empty (no header, no rows)',
        failedRun: false,
      },
      {
        label: 'an unknown extension',
        name: 'leads.xlsx',
        content: csv(csvRow(1)),
        code: 'UNKNOWN_FORMAT',
        message: 'unknown file type .xlsx: use .csv, .jsonl or .ndjson, or --format csv|jsonl',
        failedRun: false,
      },
      {
        label: 'a binary file',
        name: 'binary.csv',
        content: Buffer.concat([
          Buffer.from(`${HEADER}\n${csvRow(1)}\n`),
          Buffer.from([0x50, 0x4b, 0x00, 0x03, 0x04]),
        ]),
        code: 'BINARY_FILE',
        message: `a NUL byte at byte ${Buffer.byteLength(`${HEADER}\n${csvRow(1)}\n`) + 2}: this is a binary file, not CSV or JSONL`,
        failedRun: false,
      },
      {
        label: 'invalid UTF-8',
        name: 'latin.csv',
        content: Buffer.concat([
          Buffer.from(`${HEADER}\n${csvRow(1)}\nEXT-2,Jos`),
          Buffer.from([0xc3, 0x28]),
          Buffer.from(`,jose@example.com,,,50,${ago(HOUR)},\n`),
        ]),
        code: 'BAD_ENCODING',
        message: 'not valid UTF-8 (between bytes 0 and',
        failedRun: false,
      },
      {
        label: 'a header without a required column',
        name: 'no-email.csv',
        content: `external_id,name,phone,score,source_timestamp\nEXT-1,Ann,,50,${ago(HOUR)}\n`,
        code: 'MISSING_HEADER',
        message:
          'the header (line 1) lacks the column email; expected a header row with external_id,name,email,phone,company,score,source_timestamp,value',
        failedRun: true,
      },
      {
        label: 'a header without several required columns',
        name: 'no-header.csv',
        content: `${csvRow(1)}\n${csvRow(2)}\n`,
        code: 'MISSING_HEADER',
        message: 'lacks the columns name, email, score, source_timestamp',
        failedRun: true,
      },
      {
        label: 'a repeated header column',
        name: 'repeated.csv',
        content: `${HEADER},Email\n${csvRow(1)},x@example.com\n`,
        code: 'BAD_HEADER',
        message: 'the header (line 1) repeats the column email',
        failedRun: true,
      },
      {
        label: 'a header with broken quoting',
        name: 'broken-header.csv',
        content: `"name,email,score,source_timestamp\n${csvRow(1)}\n`,
        code: 'BAD_HEADER',
        message: 'the header (line 1) is not valid CSV: broken quoting: a quoted field is never closed',
        failedRun: true,
      },
      {
        label: 'a file of blank lines',
        name: 'blank.csv',
        content: '\n\r\n\n',
        code: 'MISSING_HEADER',
        message: 'no header row: the file has no lines with data',
        failedRun: true,
      },
    ];

    it.each(cases.map((c) => [c.label, c] as const))(
      '%s: IngestFileError naming the file, exit 1 from the CLI',
      async (_label, c) => {
        const { app, dir, env } = await setup(backend);
        const path = join(dir, c.name);
        if (c.dir) mkdirSync(path);
        else if (c.content !== undefined) writeFileSync(path, c.content);

        const error = await ingestError(app, { path });
        expect(error.code).toBe(c.code);
        expect(error.source).toBe(path);
        expect(error.message.startsWith(`${path}: `)).toBe(true);
        expect(error.message).toContain(c.message);

        const runs = await app.store.db.selectFrom('ingest_runs').selectAll().execute();
        expect(await app.store.db.selectFrom('leads').selectAll().execute()).toEqual([]);
        if (c.failedRun) {
          expect(runs).toEqual([
            expect.objectContaining({ status: 'failed', error: error.message, rows_read: 0 }),
          ]);
          const failed = await app.store.db
            .selectFrom('audit_log')
            .selectAll()
            .where('action', '=', 'ingest.failed')
            .execute();
          expect(failed.map((a) => JSON.parse(a.details).error)).toEqual([error.message]);
        } else {
          expect(runs).toEqual([]);
        }

        const cli = await runInProcess(['ingest', path], { env, cwd: dir });
        expect(cli.code).toBe(1);
        expect(cli.stdout).toBe('');
        expect(cli.stderr).toBe(`valhalla: ${error.message}\n`);
      },
    );

    it('an unreadable file (chmod 000): FILE_UNREADABLE, or read anyway when running as root', async () => {
      const { app, dir, env, file } = await setup(backend);
      const path = file('locked.csv', csv(csvRow(1)));
      chmodSync(path, 0o000);
      if (process.getuid?.() === 0) {
        // root ignores file modes: the file is read, as `cat` would read it. That is the truth to assert;
        // the refusal itself is proved below by running the CLI as an unprivileged user.
        const summary = await app.ingest({ path });
        await expectAccounted(app, summary, 1);
        expect(summary.accepted).toBe(1);
      } else {
        const error = await ingestError(app, { path });
        expect(error.code).toBe('FILE_UNREADABLE');
        expect(error.message).toBe(`${path}: cannot read: EACCES`);
        const cli = await runInProcess(['ingest', path], { env, cwd: dir });
        expect([cli.code, cli.stderr]).toEqual([1, `valhalla: ${path}: cannot read: EACCES\n`]);
      }
    });

    it('fails a run part-way on invalid UTF-8 in the middle: earlier chunks stay, the run is failed and audited', async () => {
      const { app, file } = await setup(backend);
      const rows = Array.from({ length: 3_000 }, (_, k) => csvRow(k + 1));
      const good = csv(...rows);
      const badAt = good.indexOf('Person 2500,');
      expect(badAt).toBeGreaterThan(3 * 65_536);
      const broken = Buffer.concat([
        Buffer.from(good.slice(0, badAt)),
        Buffer.from([0xc3, 0x28]),
        Buffer.from(good.slice(badAt + 2)),
      ]);
      const path = file('midway.csv', broken);

      const error = await ingestError(app, { path, chunkSize: 100 });
      expect(error.code).toBe('BAD_ENCODING');
      expect(error.message).toMatch(
        new RegExp(
          `^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid UTF-8 \\(between bytes \\d+ and \\d+\\); convert the file to UTF-8$`,
        ),
      );

      const runs = await app.store.db.selectFrom('ingest_runs').selectAll().execute();
      expect(runs).toHaveLength(1);
      const run = runs[0]!;
      expect(run).toMatchObject({
        status: 'failed',
        error: error.message,
        file_sha256: null,
        duplicate: 0,
        rejected: 0,
      });
      expect(run.finished_at).toBe(NOW);
      // Whole chunks before the bad bytes were committed; nothing after them was.
      expect(run.rows_read).toBeGreaterThanOrEqual(1_000);
      expect(run.rows_read).toBeLessThan(2_499);
      expect(run.rows_read % 100).toBe(0);
      expect(run.accepted).toBe(run.rows_read);
      const leads = await app.store.db
        .selectFrom('leads')
        .select(['source_line'])
        .orderBy('source_line')
        .execute();
      expect(leads.map((l) => l.source_line)).toEqual(Array.from({ length: run.rows_read }, (_, k) => k + 2));

      const audit = await app.store.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
      const failed = audit.filter((a) => a.action === 'ingest.failed');
      expect(failed).toHaveLength(1);
      expect(JSON.parse(failed[0]!.details)).toMatchObject({
        run: run.id,
        error: error.message,
        read: run.rows_read,
        accepted: run.rows_read,
      });
      expect(audit.at(-1)!.action).toBe('ingest.failed');
      expect(audit.filter((a) => a.action === 'ingest.rows')).toHaveLength(run.rows_read / 100);
      expect((await app.audit.verify()).ok).toBe(true);

      // The fixed file adds exactly the rest.
      const fixed = await app.ingest({ path: file('midway-fixed.csv', good), chunkSize: 500 });
      await expectAccounted(app, fixed, 3_000);
      expect(fixed).toMatchObject({ accepted: 3_000 - run.rows_read, duplicate: run.rows_read, rejected: 0 });
      expect((await app.status()).leads.total).toBe(3_000);
    });
  });

  it('ingests a generated file as its kinds say: stale expired, low scores below threshold, invalid rejected, duplicates duplicate', async () => {
    const { app, dir } = await setup(backend);
    const options = { count: 4_000, seed: 17, now: NOW };
    const path = join(dir, 'generated.csv');
    const out = createWriteStream(path);
    const tally = await writeGeneratedLeads(out, { ...options, format: 'csv' });
    await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));

    // Which duplicates repeat an identity that only ever appeared in spoiled (invalid) rows: those
    // are the first valid occurrence of that lead, so they are accepted, not duplicates.
    // A lead is one person under either identity: its e-mail or its external id.
    const seen = new Set<string>();
    const identities = (lead: { email: string; externalId: string | null }) => [
      `email:${lead.email}`,
      ...(lead.externalId === null ? [] : [`external_id:${lead.externalId}`]),
    ];
    const expectedByLine = new Map<number, string>();
    let promoted = 0;
    let line = 1;
    for (const row of generateLeads(options)) {
      line++;
      const result = validateLead(row.fields, { now: NOW, requireExternalId: false });
      if (!result.ok) {
        expect(row.kind).toBe('invalid');
        expectedByLine.set(line, 'rejected');
      } else if (identities(result.lead).some((identity) => seen.has(identity))) {
        expect(row.kind).toBe('duplicate');
        expectedByLine.set(line, 'duplicate');
      } else {
        for (const identity of identities(result.lead)) seen.add(identity);
        if (row.kind === 'duplicate') promoted++;
        expectedByLine.set(
          line,
          {
            fresh: 'pending',
            duplicate: 'pending',
            stale: 'expired',
            low_score: 'below_threshold',
            invalid: '?',
          }[row.kind],
        );
      }
    }
    expect(promoted).toBeLessThan(tally.duplicate / 5);

    const summary = await app.ingest({ path });
    const { leads, outcomes } = await expectAccounted(app, summary, 4_000);
    expect(summary.rejected).toBe(tally.invalid);
    expect(summary.states.expired).toBe(tally.stale);
    expect(summary.states.below_threshold).toBe(tally.low_score);
    expect(summary.duplicate).toBe(tally.duplicate - promoted);
    expect(summary.states.pending).toBe(tally.fresh + promoted);
    const actualByLine = new Map<number, string>([
      ...leads.map((l) => [l.source_line, l.state] as const),
      ...outcomes.map((o) => [o.line, o.outcome] as const),
    ]);
    expect(actualByLine).toEqual(expectedByLine);
  });
});

describe('unreadable file as an unprivileged user (CLI binary)', () => {
  it('exits 1 with FILE_UNREADABLE when the user may not read the file', async () => {
    const uid = process.getuid?.();
    const work = tempDir();
    const path = join(work, 'locked.csv');
    writeFileSync(path, csv(csvRow(1)));
    chmodSync(path, 0o000);
    if (uid !== 0) {
      // Not root: this process itself cannot read it.
      const env = testEnv(join(work, 'data'), { VALHALLA_DATABASE_URL: sqliteBackend.databaseUrl() });
      expect((await runInProcess(['init'], { env, cwd: work })).code).toBe(0);
      const cli = await runInProcess(['ingest', path], { env, cwd: work });
      expect([cli.code, cli.stderr]).toEqual([1, `valhalla: ${path}: cannot read: EACCES\n`]);
      return;
    }
    // As root, run the built CLI as `nobody` (uid 65534) in a folder it may write to.
    expect(
      existsSync(join(BIN, '..', '..', 'dist', 'src', 'cli', 'main.js')),
      'run `npm run build` first',
    ).toBe(true);
    chmodSync(work, 0o777);
    const env = testEnv(join(work, 'data'), { VALHALLA_DATABASE_URL: join(work, 'db', 'valhalla.db') });
    // The installation is made as `nobody` too (its database must be writable by it).
    const init = spawnSync(process.execPath, [BIN, 'init'], {
      cwd: work,
      env: { PATH: process.env.PATH, ...env },
      uid: 65_534,
      gid: 65_534,
    });
    expect(init.status, init.stderr.toString()).toBe(0);
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve, reject) => {
        const child = spawn(process.execPath, [BIN, 'ingest', path], {
          cwd: work,
          env: { PATH: process.env.PATH, ...env },
          uid: 65_534,
          gid: 65_534,
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => {
          stdout += c.toString();
        });
        child.stderr.on('data', (c: Buffer) => {
          stderr += c.toString();
        });
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      },
    );
    expect(result).toEqual({ code: 1, stdout: '', stderr: `valhalla: ${path}: cannot read: EACCES\n` });
    // It really ran as nobody: the database it created belongs to uid 65534.
    expect(statSync(join(work, 'db', 'valhalla.db')).uid).toBe(65_534);
  });
});

describe('memory (SQLite)', () => {
  /** A CSV of `rows` valid, distinct leads, written in pieces so the test itself holds little. */
  function bigCsv(dir: string, rows: number): string {
    const path = join(dir, `big-${rows}.csv`);
    const fd = openSync(path, 'w');
    const ts = ago(HOUR);
    writeSync(fd, `${HEADER}\n`);
    for (let i = 0; i < rows; i += 5_000) {
      let piece = '';
      for (let k = i; k < Math.min(rows, i + 5_000); k++) {
        piece += `EXT-${k},Person ${k},person${k}@example.com,+1 555 ${String(k).padStart(7, '0')},Company ${k % 997},${40 + (k % 61)},${ts},${k % 5_000}\n`;
      }
      writeSync(fd, piece);
    }
    closeSync(fd);
    return path;
  }

  it('stays flat in file size: 200,000 rows use no more heap than a bounded amount over 20,000', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const dir = tempDir();
    const small = bigCsv(dir, 20_000);
    const large = bigCsv(dir, 200_000);
    expect(statSync(large).size).toBeGreaterThan(15 * 1024 * 1024);

    // The database on tmpfs when there is one: this measures memory, not the disk's fsync speed.
    const dbDir = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/valhalla-test-') : tempDir();
    onTestFinished(() => rmSync(dbDir, { recursive: true, force: true }));
    let n = 0;
    const measure = async (path: string, rows: number) => {
      const env = testEnv(join(dir, 'data'), { VALHALLA_DATABASE_URL: join(dbDir, `memory-${++n}.db`) });
      const { app } = await initialize(loadConfig({ env, cwd: dir }), { clock: new ManualClock(NOW_ISO) });
      opened.push(app);
      gc();
      const base = process.memoryUsage().heapUsed;
      let peak = 0;
      let retained = 0;
      let calls = 0;
      const summary = await app.ingest({
        path,
        onProgress: () => {
          const used = process.memoryUsage().heapUsed - base;
          peak = Math.max(peak, used);
          // Every 20 chunks, what is still reachable: grows with the file if anything accumulates.
          if (++calls % 20 === 0) {
            gc();
            retained = Math.max(retained, process.memoryUsage().heapUsed - base);
          }
        },
      });
      expect(summary).toMatchObject({ read: rows, accepted: rows, rejected: 0, duplicate: 0 });
      await app.close();
      return { peak, retained, calls };
    };
    const a = await measure(small, 20_000);
    const b = await measure(large, 200_000);
    const MB = 1024 * 1024;
    expect(b.calls).toBe(201);
    expect(b.peak).toBeLessThan(150 * MB);
    // Linear growth would make the large run ten times the small one.
    expect(b.peak).toBeLessThan(Math.max(3 * a.peak, 40 * MB));
    // What stays reachable (after a full GC) must not grow with the file: a leak of even ~30 bytes a
    // row (a pseudonym per row kept in an array) is 6 MB here and fails this.
    expect(b.retained).toBeLessThan(Math.max(a.retained, 0) + 4 * MB);
    console.info(
      `[memory] 20k rows: peak ${(a.peak / MB).toFixed(1)} MB, retained ${(a.retained / MB).toFixed(1)} MB; 200k rows: peak ${(b.peak / MB).toFixed(1)} MB, retained ${(b.retained / MB).toFixed(1)} MB`,
    );
    // 220,000 rows ingested: about 25 s on a quiet machine, over a minute on a loaded one.
  }, 400_000);

  it('while an ingest runs its statement journals stay in memory, its log folds every 256 MB, its commits wait for no flush, and all three are put back after', async () => {
    const dir = tempDir();
    const env = testEnv(join(dir, 'data'), { VALHALLA_DATABASE_URL: join(dir, 'settings.db') });
    const { app } = await initialize(loadConfig({ env, cwd: dir }), { clock: new ManualClock(NOW_ISO) });
    opened.push(app);
    const raw = app.store.sqlite!;
    const settings = () => ({
      temp_store: raw.pragma('temp_store', { simple: true }),
      wal_autocheckpoint: raw.pragma('wal_autocheckpoint', { simple: true }),
      synchronous: raw.pragma('synchronous', { simple: true }),
    });
    const outside = settings();
    // synchronous 2 is FULL (every commit flushed), 1 NORMAL.
    expect(outside).toEqual({ temp_store: 0, wal_autocheckpoint: 1000, synchronous: 2 });
    const during: ReturnType<typeof settings>[] = [];
    // The flush setting each ingest entry was committed under, read as the entry is written.
    const committedUnder: { action: string; synchronous: unknown }[] = [];
    const prepare = raw.prepare;
    raw.prepare = ((source: string) => {
      const statement = prepare.call(raw, source);
      if (!source.startsWith('insert into "audit_log"')) return statement;
      const run = statement.run.bind(statement) as (...params: unknown[]) => unknown;
      statement.run = ((...params: unknown[]) => {
        const action = params.flat().find((p) => typeof p === 'string' && p.startsWith('ingest.'));
        committedUnder.push({
          action: String(action),
          synchronous: raw.pragma('synchronous', { simple: true }),
        });
        return run(...params);
      }) as typeof statement.run;
      return statement;
    }) as typeof raw.prepare;
    try {
      const path = join(dir, 'settings.csv');
      writeFileSync(path, csv(...Array.from({ length: 1_500 }, (_, i) => csvRow(i))));
      const summary = await app.ingest({ path, onProgress: () => during.push(settings()) });
      expect(summary.accepted).toBe(1_500);
      expect(during.length).toBeGreaterThan(0);
      for (const s of during)
        expect(s).toEqual({ temp_store: 2, wal_autocheckpoint: 65_536, synchronous: 1 });
      expect(settings()).toEqual(outside);
      // The chunks committed without a flush; the run's last commit, with it, after the setting was back.
      expect(committedUnder).toEqual([
        { action: 'ingest.started', synchronous: 2 },
        { action: 'ingest.rows', synchronous: 1 },
        { action: 'ingest.rows', synchronous: 1 },
        { action: 'ingest.finished', synchronous: 2 },
      ]);

      // A run that fails part-way (bad bytes after its first chunk): the same, its failure flushed.
      committedUnder.length = 0;
      const rows = csv(...Array.from({ length: 1_500 }, (_, i) => csvRow(2_000 + i)));
      const badAt = rows.indexOf('Person 3200,');
      const broken = join(dir, 'broken.csv');
      writeFileSync(
        broken,
        Buffer.concat([
          Buffer.from(rows.slice(0, badAt)),
          Buffer.from([0xc3, 0x28]),
          Buffer.from(rows.slice(badAt + 2)),
        ]),
      );
      // Chunks of 100: some commit before the reader meets the bad bytes.
      await expect(app.ingest({ path: broken, chunkSize: 100 })).rejects.toThrow(/not valid UTF-8/);
      expect(settings()).toEqual(outside);
      const chunks = committedUnder.filter((c) => c.action === 'ingest.rows');
      expect(chunks.length).toBeGreaterThan(0);
      expect(committedUnder).toEqual([
        { action: 'ingest.started', synchronous: 2 },
        ...chunks.map(() => ({ action: 'ingest.rows', synchronous: 1 })),
        { action: 'ingest.failed', synchronous: 2 },
      ]);
    } finally {
      raw.prepare = prepare;
    }
  });

  it('rows far larger than leads: a chunk holds at most 8 MiB of the file, not 1,000 such rows', async () => {
    const dir = tempDir();
    const env = testEnv(join(dir, 'data'), { VALHALLA_DATABASE_URL: join(dir, 'wide.db') });
    const { app } = await initialize(loadConfig({ env, cwd: dir }), { clock: new ManualClock(NOW_ISO) });
    opened.push(app);
    // 300 rows of about 40 KB each (a company name far past any real one): 12 MB, under 1,000 rows.
    const wide = 'W'.repeat(40_000);
    const path = join(dir, 'wide.csv');
    writeFileSync(path, csv(...Array.from({ length: 300 }, (_, i) => csvRow(i, { company: `${wide}${i}` }))));
    expect(statSync(path).size).toBeGreaterThan(10 * 1024 * 1024);
    const summary = await app.ingest({ path });
    expect(summary.read).toBe(300);
    expect(summary.accepted + summary.rejected).toBe(300);
    const entries = (await app.store.db.selectFrom('audit_log').select(['action', 'details']).execute())
      .filter((e) => e.action === 'ingest.rows')
      .map((e) => JSON.parse(e.details) as { read: number; lines: [number, number] });
    // Cut by size: two chunks (each at most 8 MiB of the file, about 200 of these rows), where 300 rows
    // would otherwise be one chunk and one transaction.
    expect(entries.length).toBe(2);
    expect(entries.map((e) => e.read).reduce((a, b) => a + b, 0)).toBe(300);
    for (const e of entries) expect(e.read * 40_000).toBeLessThan(9 * 1024 * 1024);
    expect(entries[1]!.lines[0]).toBe(entries[0]!.lines[1] + 1);
  });
});
