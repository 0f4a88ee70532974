/**
 * The input suite's ingest harness: a real app on a fresh SQLite database (ManualClock, log at trace
 * to a file), an ingest by path or on standard input in given byte chunks, and the checks every run
 * must pass (test/input/ingest-properties.test.ts). The outputs each run adds (log lines, audit
 * entries, rejects file, error message) are kept to be searched for PII.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { expect } from 'vitest';
import { type App, openApp } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { type IngestSummary, isIngestFileError, LEAD_FIELDS } from '../../src/ingest/index.js';
import { testEnv } from './cli.js';
import { chunkPoints, expectStored, findLeaks, splitBytes, tally } from './lead-files.js';
import { type BuiltFile, type ExpectedRecord, type Format, NOW, NOW_ISO } from './lead-fuzz.js';
import { tempDir } from './tmp.js';

export interface Delivery {
  via: 'file' | 'stdin';
  points: number[];
  chunkSize: number;
}
export const delivery: fc.Arbitrary<Delivery> = fc.record({
  via: fc.constantFrom('file', 'stdin'),
  points: chunkPoints,
  chunkSize: fc.constantFrom(1, 2, 3, 7, 1_000),
});

export interface IngestResult {
  summary: IngestSummary | null;
  error: unknown;
  /** The run this ingest created, or null when it failed before creating one. */
  runId: number | null;
  /** What the log, the audit chain and the rejects file gained: searched for PII. */
  outputs: Record<string, string>;
}

const PROTOTYPE_KEYS = Object.getOwnPropertyNames(Object.prototype).sort();

export type IngestHarness = Awaited<ReturnType<typeof openIngestHarness>>;

/** A harness on its own app and database; close it with `harness.app.close()`. */
/** Bytes in a file so far (0 while it does not exist): where a test starts reading a log. */
export const fileSize = (path: string): number => (existsSync(path) ? statSync(path).size : 0);

/** The newest ingest run's id (0 before any): a test tells whether a run was recorded. */
export async function lastIngestRunId(app: App): Promise<number> {
  const row = await app.store.db
    .selectFrom('ingest_runs')
    .select('id')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.id ?? 0;
}

export async function openIngestHarness() {
  const dir = tempDir();
  const logFile = join(dir, 'data', 'valhalla.log');
  const env = testEnv(join(dir, 'data'), { VALHALLA_LOG_LEVEL: 'trace' });
  const app: App = await openApp({ config: loadConfig({ env, cwd: dir }), clock: new ManualClock(NOW_ISO) });

  const lastRunId = () => lastIngestRunId(app);
  const lastSeq = async () =>
    (
      await app.store.db
        .selectFrom('audit_log')
        .select('seq')
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst()
    )?.seq ?? 0;

  async function ingest(
    bytes: Buffer,
    format: Format | undefined,
    d: Delivery,
    token: string,
  ): Promise<IngestResult> {
    const [logFrom, runBefore, seqBefore] = [fileSize(logFile), await lastRunId(), await lastSeq()];
    let summary: IngestSummary | null = null;
    let error: unknown = null;
    try {
      if (d.via === 'file') {
        const path = join(
          dir,
          `${token}.${format === 'jsonl' ? 'ndjson' : format === 'csv' ? 'CSV' : 'txt'}`,
        );
        writeFileSync(path, bytes);
        summary = await app.ingest({ path, chunkSize: d.chunkSize });
      } else {
        const stdin = Readable.from(splitBytes(bytes, d.points));
        summary = await app.ingest({
          path: '-',
          stdin,
          chunkSize: d.chunkSize,
          ...(format ? { format } : {}),
        });
      }
    } catch (caught) {
      error = caught;
    }
    const runAfter = await lastRunId();
    const audit = await app.store.db
      .selectFrom('audit_log')
      .selectAll()
      .where('seq', '>', seqBefore)
      .execute();
    const outputs: Record<string, string> = {
      log: readFileSync(logFile).subarray(logFrom).toString('utf8'),
      audit: JSON.stringify(audit),
      error: error instanceof Error ? error.message : String(error ?? ''),
    };
    if (summary?.rejectsFile) outputs.rejects = readFileSync(summary.rejectsFile, 'utf8');
    return { summary, error, runId: runAfter > runBefore ? runAfter : null, outputs };
  }

  /** Everything a completed run must satisfy. */
  async function expectCompleted(built: BuiltFile, result: IngestResult): Promise<void> {
    expect(result.error, `no error expected: ${String(result.error)}`).toBeNull();
    const s = result.summary!;
    const want = tally(built.records);
    expect({
      read: s.read,
      accepted: s.accepted,
      duplicate: s.duplicate,
      rejected: s.rejected,
      states: s.states,
    }).toEqual(want);
    expect(s.read).toBe(s.accepted + s.duplicate + s.rejected);
    const run = await app.store.db
      .selectFrom('ingest_runs')
      .selectAll()
      .where('id', '=', s.runId)
      .executeTakeFirst();
    expect(run).toMatchObject({
      status: 'completed',
      rows_read: s.read,
      accepted: s.accepted,
      duplicate: s.duplicate,
      rejected: s.rejected,
      error: null,
      finished_at: NOW,
    });
    await expectStored(app.store.db, s.runId, built.records);
    expectRejectsFile(s, built.records);
    await expectClean(built, result);
  }

  /** The rejects file: every row not stored, rejected (by its field) or duplicate (by the identity that matched). */
  function expectRejectsFile(summary: IngestSummary, records: ExpectedRecord[]): void {
    const notStored = records.filter((r) => r.outcome !== 'accepted');
    if (notStored.length === 0) {
      expect(summary.rejectsFile).toBeNull();
      return;
    }
    const lines = readFileSync(summary.rejectsFile!, 'utf8').trimEnd().split('\n');
    const entries = lines.map((l) => JSON.parse(l) as { run: number; line: number; problems: unknown[] });
    expect(entries.map((e) => e.line)).toEqual(notStored.map((r) => r.line));
    for (const [i, entry] of entries.entries()) {
      expect(Object.keys(entry).sort()).toEqual(['line', 'problems', 'run']);
      expect(entry.run).toBe(summary.runId);
      expect(entry.problems.length).toBeGreaterThan(0);
      for (const problem of entry.problems as Record<string, unknown>[]) {
        expect(Object.keys(problem).sort()).toEqual(['field', 'message']);
        expect([...LEAD_FIELDS, 'row']).toContain(problem.field);
        expect(typeof problem.message).toBe('string');
      }
      const record = notStored[i]!;
      const first = entry.problems[0] as { field: string; message: string };
      if (record.outcome === 'rejected') expect(first.field).toBe(record.field);
      else {
        expect(['email', 'external_id']).toContain(first.field);
        expect(first.message).toMatch(/^duplicate: (e-mail|external id) /);
      }
    }
  }

  /** No PII in any output, the audit chain intact, no prototype polluted by a hostile key. */
  async function expectClean(built: BuiltFile, result: IngestResult): Promise<void> {
    expect(findLeaks(built.needles, result.outputs)).toEqual([]);
    expect((await app.audit.verify()).ok).toBe(true);
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(PROTOTYPE_KEYS);
  }

  /**
   * A failed run: a clean IngestFileError; when it got as far as creating its run, the run is failed
   * and audited, and what it kept is whole chunks whose records each have their expected outcome.
   */
  async function expectFailed(
    result: IngestResult,
    chunkSize: number,
    expected: ExpectedRecord[] | null,
  ): Promise<void> {
    expect(isIngestFileError(result.error), `an IngestFileError, not ${String(result.error)}`).toBe(true);
    if (result.runId === null) {
      expect(result.outputs.audit).toBe('[]');
      return;
    }
    const db = app.store.db;
    const run = (await db
      .selectFrom('ingest_runs')
      .selectAll()
      .where('id', '=', result.runId)
      .executeTakeFirst())!;
    expect(run).toMatchObject({ status: 'failed', finished_at: NOW, file_sha256: null });
    expect(run.error).toBe((result.error as Error).message);
    expect(run.rows_read % chunkSize, 'only whole chunks are kept').toBe(0);
    expect(run.rows_read).toBe(run.accepted + run.duplicate + run.rejected);
    expect(result.outputs.audit).toContain('"ingest.failed"');
    if (expected !== null) {
      await expectStored(db, result.runId, expected.slice(0, run.rows_read));
    } else {
      const leads = await db
        .selectFrom('leads')
        .select('source_line')
        .where('run_id', '=', result.runId)
        .execute();
      const outcomes = await db
        .selectFrom('ingest_outcomes')
        .select('line')
        .where('run_id', '=', result.runId)
        .execute();
      expect(leads.length).toBe(run.accepted);
      expect(outcomes.length).toBe(run.duplicate + run.rejected);
      const lines = [...leads.map((l) => l.source_line), ...outcomes.map((o) => o.line)];
      expect(new Set(lines).size).toBe(run.rows_read);
    }
  }

  /**
   * The same file ingested again: nothing is stored twice. Every row accepted the first time, or a
   * duplicate then, is now a duplicate of a lead stored by the first run: the one holding its e-mail,
   * else its external id (a row that was a duplicate by its external id may share its e-mail with a
   * row accepted after it); rejects stay rejects.
   */
  async function expectReingested(
    built: BuiltFile,
    first: IngestResult,
    d: Delivery,
    token: string,
  ): Promise<void> {
    const second = await ingest(Buffer.from(built.text, 'utf8'), built.format, d, `${token}-again`);
    expect(second.error).toBeNull();
    const s = second.summary!;
    const want = tally(built.records);
    expect({ read: s.read, accepted: s.accepted, duplicate: s.duplicate, rejected: s.rejected }).toEqual({
      read: want.read,
      accepted: 0,
      duplicate: want.accepted + want.duplicate,
      rejected: want.rejected,
    });
    const db = app.store.db;
    const firstLeads = await db
      .selectFrom('leads')
      .select(['id', 'source_line'])
      .where('run_id', '=', first.summary!.runId)
      .execute();
    const leadOfLine = new Map(firstLeads.map((l) => [l.source_line, l.id]));
    const acceptedLineOf = new Map<string, number>();
    for (const r of built.records) {
      if (r.outcome !== 'accepted') continue;
      for (const identity of r.identities ?? []) acceptedLineOf.set(identity, r.line);
    }
    const storedLeadOf = (r: ExpectedRecord) =>
      leadOfLine.get(
        (r.identities ?? []).map((identity) => acceptedLineOf.get(identity)).find((l) => l !== undefined)!,
      );
    const outcomes = await db
      .selectFrom('ingest_outcomes')
      .selectAll()
      .where('run_id', '=', s.runId)
      .orderBy('line')
      .execute();
    expect(outcomes.map((o) => [o.line, o.outcome, o.outcome === 'rejected' ? o.field : o.lead_id])).toEqual(
      built.records.map((r) => [
        r.line,
        r.outcome === 'rejected' ? 'rejected' : 'duplicate',
        r.outcome === 'rejected' ? r.field : storedLeadOf(r),
      ]),
    );
    expect(await db.selectFrom('leads').select('id').where('run_id', '=', s.runId).execute()).toEqual([]);
    await expectClean(built, second);
  }

  async function storedLines(runId: number): Promise<Set<number>> {
    const db = app.store.db;
    const leads = await db.selectFrom('leads').select('source_line').where('run_id', '=', runId).execute();
    const outcomes = await db
      .selectFrom('ingest_outcomes')
      .select('line')
      .where('run_id', '=', runId)
      .execute();
    const lines = [...leads.map((l) => l.source_line), ...outcomes.map((o) => o.line)];
    expect(new Set(lines).size, 'one outcome per line').toBe(lines.length);
    return new Set(lines);
  }

  return { app, ingest, expectCompleted, expectFailed, expectClean, expectReingested, storedLines };
}

/** Insert, delete or replace single bytes. */
export function applyEdits(bytes: Buffer, edits: { at: number; op: string; byte: number }[]): Buffer {
  let out = bytes;
  for (const e of edits) {
    const at = e.at % (out.length + 1);
    const tail = out.subarray(e.op === 'insert' ? at : at + 1);
    out = Buffer.concat([
      out.subarray(0, at),
      e.op === 'delete' ? Buffer.alloc(0) : Buffer.from([e.byte]),
      tail,
    ]);
  }
  return out;
}
