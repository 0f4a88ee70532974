// The daily cap's and budget's running totals (table daily_usage), one row per UTC day.
import type { Executor } from './executor.js';

/** The UTC day (YYYY-MM-DD) of an instant: the daily cap's window. */
export function utcDay(at: number): string {
  return new Date(at).toISOString().slice(0, 10);
}

/** Leads claimed into live batches on the UTC day of `at`, and their exposure (attempts count, not just successes). */
export async function dailyUsage(db: Executor, at: number): Promise<{ leads: number; exposure: number }> {
  const row = await db
    .selectFrom('daily_usage')
    .select(['leads', 'exposure'])
    .where('day', '=', utcDay(at))
    .executeTakeFirst();
  return { leads: Number(row?.leads ?? 0), exposure: Number(row?.exposure ?? 0) };
}

/** Count leads claimed into a live batch, and their exposure, toward the day of `at`. */
export async function addDailyUsage(
  db: Executor,
  at: number,
  leads: number,
  exposure: number,
): Promise<void> {
  await db
    .insertInto('daily_usage')
    .values({ day: utcDay(at), leads, exposure })
    .onConflict((oc) =>
      oc.column('day').doUpdateSet((eb) => ({
        leads: eb('daily_usage.leads', '+', leads),
        exposure: eb('daily_usage.exposure', '+', exposure),
      })),
    )
    .execute();
}
