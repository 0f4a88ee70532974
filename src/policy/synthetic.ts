/**
 * A synthetic lead (generated for demos and rehearsal) is marked at birth by its external id: the
 * generator gives every lead an id starting with this prefix, and ingest recognises it and stores the
 * mark with the lead (`leads.synthetic`). An id survives any CSV or JSONL round trip that keeps the
 * lead's fields, which a marker column would not. The prefix is reserved: a real lead must not use it
 * (one that does is treated as synthetic, and never sent live).
 */
export const SYNTHETIC_ID_PREFIX = 'SYNTHETIC-';

/** Is this external id a synthetic lead's? (case-insensitive, after trimming, as ingest reads ids) */
export function isSyntheticExternalId(externalId: string | null | undefined): boolean {
  if (externalId === null || externalId === undefined) return false;
  return externalId.trim().toUpperCase().startsWith(SYNTHETIC_ID_PREFIX);
}
