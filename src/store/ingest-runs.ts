import type { Executor } from './executor.js';
import type { IngestOutcomesTable, IngestRun } from './schema.js';

export async function createIngestRun(
  db: Executor,
  run: { startedAt: number; source: string; format: string; operator: string },
): Promise<number> {
  const row = await db
    .insertInto('ingest_runs')
    .values({
      started_at: run.startedAt,
      source: run.source,
      format: run.format,
      operator: run.operator,
      status: 'running',
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function addIngestCounts(
  db: Executor,
  runId: number,
  counts: { read: number; accepted: number; duplicate: number; rejected: number },
): Promise<void> {
  await db
    .updateTable('ingest_runs')
    .set((eb) => ({
      rows_read: eb('rows_read', '+', counts.read),
      accepted: eb('accepted', '+', counts.accepted),
      duplicate: eb('duplicate', '+', counts.duplicate),
      rejected: eb('rejected', '+', counts.rejected),
    }))
    .where('id', '=', runId)
    .execute();
}

export async function finishIngestRun(
  db: Executor,
  runId: number,
  end: {
    finishedAt: number;
    status: 'completed' | 'failed';
    fileSha256: string | null;
    error: string | null;
  },
): Promise<void> {
  await db
    .updateTable('ingest_runs')
    .set({ finished_at: end.finishedAt, status: end.status, file_sha256: end.fileSha256, error: end.error })
    .where('id', '=', runId)
    .execute();
}

/** One row that did not become a lead, as `ingest_outcomes` records it. */
export type RowOutcomeRecord = Omit<IngestOutcomesTable, 'id'>;

export async function recordRowOutcomes(db: Executor, outcomes: RowOutcomeRecord[]): Promise<void> {
  for (let i = 0; i < outcomes.length; i += 1_000) {
    await db
      .insertInto('ingest_outcomes')
      .values(outcomes.slice(i, i + 1_000))
      .execute();
  }
}

export async function getIngestRun(db: Executor, runId: number): Promise<IngestRun | undefined> {
  return db.selectFrom('ingest_runs').selectAll().where('id', '=', runId).executeTakeFirst();
}

/** Totals over every ingest: rows read and how each ended. */
export async function ingestTotals(
  db: Executor,
): Promise<{ runs: number; read: number; accepted: number; duplicate: number; rejected: number }> {
  const row = await db
    .selectFrom('ingest_runs')
    .select((eb) => [
      eb.fn.countAll<number>().as('runs'),
      eb.fn.coalesce(eb.fn.sum<number>('rows_read'), eb.lit(0)).as('read'),
      eb.fn.coalesce(eb.fn.sum<number>('accepted'), eb.lit(0)).as('accepted'),
      eb.fn.coalesce(eb.fn.sum<number>('duplicate'), eb.lit(0)).as('duplicate'),
      eb.fn.coalesce(eb.fn.sum<number>('rejected'), eb.lit(0)).as('rejected'),
    ])
    .executeTakeFirstOrThrow();
  return {
    runs: Number(row.runs),
    read: Number(row.read),
    accepted: Number(row.accepted),
    duplicate: Number(row.duplicate),
    rejected: Number(row.rejected),
  };
}

/** The rejected rows of an ingest run, by line: where and why, never the row's values. */
export function rejectedRowsOf(
  db: Executor,
  runId: number,
  limit: number,
): Promise<{ line: number; field: string | null; reason: string }[]> {
  return db
    .selectFrom('ingest_outcomes')
    .select(['line', 'field', 'reason'])
    .where('run_id', '=', runId)
    .where('outcome', '=', 'rejected')
    .orderBy('line')
    .limit(limit)
    .execute();
}
