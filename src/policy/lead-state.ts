/** Every state a lead can be in. */
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
