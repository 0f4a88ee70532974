/** A row made ready to commit: a lead with its keys and starting state, or the problems that reject it. */
import { initialLeadState, isSyntheticExternalId, SYNTHETIC_ID_PREFIX } from '../policy/index.js';
import type { NewLead } from '../store/index.js';
import { readAttributes } from './attributes.js';
import { type FieldProblem, validateLead } from './lead-schema.js';
import type { IngestDeps } from './run.js';
import type { SourceRow } from './source-row.js';

export type PreparedRow =
  | { kind: 'lead'; line: number; lead: NewLead; pseudonym: string }
  | { kind: 'rejected'; line: number; problems: FieldProblem[] };
export type PreparedLead = Extract<PreparedRow, { kind: 'lead' }>;

export function prepareRow(deps: IngestDeps, runId: number, row: SourceRow, now: number): PreparedRow {
  if ('unreadable' in row)
    return { kind: 'rejected', line: row.line, problems: [{ field: 'row', message: row.unreadable }] };
  const result = validateLead(row.fields, { now, requireExternalId: deps.dedupKey === 'external_id' });
  // Read even when the lead's own fields failed: every problem of the row is reported at once.
  const attributes = readAttributes(row.fields, deps.attributes ?? []);
  if (!result.ok || !attributes.ok) {
    const problems = [...(result.ok ? [] : result.problems), ...(attributes.ok ? [] : attributes.problems)];
    return { kind: 'rejected', line: row.line, problems };
  }
  const lead = result.lead;
  // Marked at birth by its external id (the reserved prefix, or the former generator's ids); the mark is stored with the lead.
  const synthetic = isSyntheticExternalId(lead.externalId);
  if (synthetic && deps.realDataOnly) {
    return {
      kind: 'rejected',
      line: row.line,
      problems: [
        {
          field: 'external_id',
          message: `a synthetic lead (reserved prefix ${SYNTHETIC_ID_PREFIX}, or an id of the former generator EXT-<seed>-<n>): VALHALLA_REAL_DATA_INGEST=1 takes real data only`,
        },
      ],
    };
  }
  // Both identities are keyed: either one matching a stored lead makes the row a duplicate. The rule
  // picks the primary one, the lead's dedup key (its pseudonym and lead key derive from it).
  const emailKey = deps.pseudonymizer.dedupKey('email', lead.email);
  const externalIdKey =
    lead.externalId === null ? null : deps.pseudonymizer.dedupKey('external_id', lead.externalId);
  // With the external id rule a row without one was rejected above (requireExternalId).
  const dedupKey = deps.dedupKey === 'email' ? emailKey : (externalIdKey ?? emailKey);
  const { state, reason } = initialLeadState(lead, deps.rules, now);
  return {
    kind: 'lead',
    line: row.line,
    pseudonym: deps.pseudonymizer.pseudonym(dedupKey),
    lead: {
      dedup_key: dedupKey,
      email_key: emailKey,
      external_id_key: externalIdKey,
      external_id: lead.externalId,
      name: lead.name,
      email: lead.email,
      phone: lead.phone,
      company: lead.company,
      score: lead.score,
      source_ts: lead.sourceTs,
      value: lead.value,
      state,
      state_reason: reason,
      ingested_at: now,
      updated_at: now,
      exported_at: null,
      run_id: runId,
      source_line: row.line,
      synthetic: synthetic ? 1 : 0,
      attributes: attributes.attributes,
    },
  };
}

export function describeProblems(problems: FieldProblem[]): string {
  return problems.map((p) => (p.field === 'row' ? p.message : `${p.field}: ${p.message}`)).join('; ');
}
