import { z } from 'zod';

/**
 * VALHALLA_RETENTION_DAYS: how long a completed lead (exported, expired, below threshold, dropped)
 * keeps its personal data after its last change; `valhalla archive --retention` applies it. Unset: no
 * retention window (nothing is archived unless an operator names a date). An environment variable and
 * not a policy-file field: the policy file is hashed and signed, and a retention change must not void
 * the sign-offs.
 */
export const RETENTION_DAYS_MIN = 1;
/** Ten years: a larger number is far more likely a slip (hours, or a date) than a retention period. */
export const RETENTION_DAYS_MAX = 3_650;

export const retentionDaysSchema = z
  .string()
  .regex(/^\s*\d+\s*$/, {
    error: `not a whole number of days from ${RETENTION_DAYS_MIN} to ${RETENTION_DAYS_MAX} (unset it for no retention window)`,
  })
  .transform(Number)
  .pipe(
    z
      .number()
      .min(RETENTION_DAYS_MIN, {
        error: `below the minimum ${RETENTION_DAYS_MIN} day (unset it for no retention window)`,
      })
      .max(RETENTION_DAYS_MAX, { error: `above the maximum ${RETENTION_DAYS_MAX} days (ten years)` }),
  );

/** How VALHALLA_RETENTION_DAYS reads in `config show`. */
export function describeRetention(days: number | null): string {
  return days === null ? '(not set: no retention window)' : `${days} days`;
}
