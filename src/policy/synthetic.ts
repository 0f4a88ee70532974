/**
 * A synthetic lead (generated for demos and rehearsal) is marked at birth by its external id: the
 * generator gives every lead an id starting with this prefix, and ingest recognises it and stores the
 * mark with the lead (`leads.synthetic`). An id survives any CSV or JSONL round trip that keeps the
 * lead's fields, which a marker column would not. The prefix is reserved: a real lead must not use it
 * (one that does is treated as synthetic, and never sent live).
 */
export const SYNTHETIC_ID_PREFIX = 'SYNTHETIC-';

/**
 * The ids `valhalla leads generate` gave before the prefix existed: `EXT-<seed>-<n>`, digits only.
 * Files made then carry no other mark, so that shape counts as synthetic too (fail closed: a real
 * lead whose CRM id happens to look so is held back, never a generated one sent).
 */
const FORMER_GENERATOR_ID = /^EXT-\d+-\d+$/;

/** Is this external id a synthetic lead's? (the prefix case-insensitive, after trimming, as ingest reads ids) */
export function isSyntheticExternalId(externalId: string | null | undefined): boolean {
  if (externalId === null || externalId === undefined) return false;
  const id = externalId.trim();
  return id.toUpperCase().startsWith(SYNTHETIC_ID_PREFIX) || FORMER_GENERATOR_ID.test(id);
}
