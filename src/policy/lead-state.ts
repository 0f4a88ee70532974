/** Every state a lead can be in (DESIGN.md §5). */
export const LEAD_STATES = [
  'pending',
  'in_flight',
  'exported',
  'below_threshold',
  'expired',
  'quarantined',
  'archived',
] as const;
export type LeadState = (typeof LEAD_STATES)[number];

/** Outcomes of an ingested row that did not become a lead. */
export const ROW_OUTCOMES = ['duplicate', 'rejected'] as const;
export type RowOutcome = (typeof ROW_OUTCOMES)[number];

export function assertNever(value: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${String(value)}`);
}
