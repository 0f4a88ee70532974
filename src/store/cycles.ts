// The cycles (table cycles): started, finished with their summary, and ramp stage 1's confirmations.
import type { Executor } from './executor.js';
import type { CycleKind } from './schema.js';

export async function createCycle(
  db: Executor,
  cycle: {
    startedAt: number;
    phase: 3 | 4;
    kind: CycleKind;
    rampStage: number | null;
    ceiling: number;
    limitedBy: string;
  },
): Promise<number> {
  const row = await db
    .insertInto('cycles')
    .values({
      started_at: cycle.startedAt,
      phase: cycle.phase,
      kind: cycle.kind,
      ramp_stage: cycle.rampStage,
      ceiling: cycle.ceiling,
      limited_by: cycle.limitedBy,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function finishCycle(
  db: Executor,
  id: number,
  end: { finishedAt: number; claimed: number; actions: number; summary: unknown },
): Promise<void> {
  await db
    .updateTable('cycles')
    .set({
      finished_at: end.finishedAt,
      claimed: end.claimed,
      actions: end.actions,
      summary: JSON.stringify(end.summary),
    })
    .where('id', '=', id)
    .execute();
}

/** The latest live cycle that sent or claimed anything, for stage 1's operator confirmation. */
export async function lastLiveCycle(db: Executor) {
  return db
    .selectFrom('cycles')
    .selectAll()
    .where('kind', '=', 'live')
    .where('claimed', '>', 0)
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export async function confirmCycle(db: Executor, id: number, by: string, at: number): Promise<boolean> {
  const result = await db
    .updateTable('cycles')
    .set({ confirmed_at: at, confirmed_by: by })
    .where('id', '=', id)
    .where('confirmed_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function recentCycles(db: Executor, limit: number) {
  return db.selectFrom('cycles').selectAll().orderBy('id', 'desc').limit(limit).execute();
}
