/**
 * How the validated VALHALLA_* variables are parsed: switches, whole numbers and rates under the
 * policy's hard caps (refused above them, never clamped), enumerations and the retention window.
 */
import { z } from 'zod';
import { HARD_CAPS } from '../policy/index.js';
import type { Phase } from './phase.js';
import { retentionDaysSchema } from './retention.js';

const flag = (variable: string) =>
  z.enum(['0', '1'], { error: `${variable} must be 0 or 1` }).transform((v) => v === '1');

const wholeNumber = (min: number, hardMax: number, what: string) =>
  z
    .string()
    .regex(/^\s*\d+\s*$/, { error: `not a whole number from ${min} to ${hardMax} (${what})` })
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, { error: `below the minimum ${min}` })
        .max(hardMax, { error: `above the hard maximum ${hardMax} ${what} (refused, not clamped)` }),
    );

const positiveNumber = (hardMax: number, what: string) =>
  z
    .string()
    .regex(/^\s*\d+(\.\d+)?\s*$/, { error: `not a number above 0 and at most ${hardMax} (${what})` })
    .transform(Number)
    .pipe(
      z
        .number()
        .positive({ error: 'must be above 0' })
        .max(hardMax, { error: `above the hard maximum ${hardMax} ${what} (refused, not clamped)` }),
    );

export const envSchemas = {
  VALHALLA_PHASE: z
    .enum(['3', '4'], { error: 'must be 3 (DRY-RUN) or 4 (LIVE)' })
    .transform((v) => Number(v) as Phase),
  VALHALLA_REAL_DATA_INGEST: flag('VALHALLA_REAL_DATA_INGEST'),
  VALHALLA_DRY_RUN: flag('VALHALLA_DRY_RUN'),
  VALHALLA_DISABLE_OUTBOUND: flag('VALHALLA_DISABLE_OUTBOUND'),
  VALHALLA_MAX_LEADS_PER_CYCLE: wholeNumber(1, HARD_CAPS.leadsPerCycle, 'leads per cycle'),
  VALHALLA_MAX_ACTIONS_PER_CYCLE: wholeNumber(0, HARD_CAPS.actionsPerCycle, 'actions per cycle'),
  VALHALLA_RATE_LIMIT: positiveNumber(HARD_CAPS.rateLimitPerSecond, 'requests per second'),
  VALHALLA_DEDUP_KEY: z.enum(['email', 'external_id'], { error: 'must be email or external_id' }),
  VALHALLA_CYCLE_INTERVAL_S: wholeNumber(1, 86_400, 'seconds between cycles'),
  VALHALLA_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], {
    error: 'must be one of trace, debug, info, warn, error, fatal, silent',
  }),
  VALHALLA_RETENTION_DAYS: retentionDaysSchema,
} as const;
