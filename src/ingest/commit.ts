/** Committing a chunk of rows: each row's outcome (accepted, duplicate, rejected), its counts and its audit entry. */
import type { AuditInput } from '../audit/index.js';
import {
  addIngestCounts,
  findLeadsByIdentityKeys,
  insertNewLeadsInBulk,
  type LeadIdentity,
  type RowOutcomeRecord,
  recordRowOutcomes,
} from '../store/index.js';
import { describeDuplicate, identityKeysOf, indexByKey, matchesOf } from './duplicates.js';
import type { FieldProblem } from './lead-schema.js';
import { describeProblems, type PreparedLead, type PreparedRow, prepareRow } from './prepare.js';
import { checkRejectBound, type RejectBound } from './reject-bound.js';
import type { RejectsFile } from './rejects-file.js';
import { ACTOR, type IngestDeps, type IngestSummary } from './run.js';
import type { SourceRow } from './source-row.js';

/** What each entry of an `ingest.rows` entry's `accepted` holds, in order. */
const ACCEPTED_COLUMNS = ['lead', 'line', 'pseudonym', 'state'] as const;

/** Validate one chunk of rows, check the reject bound, then commit it in transactions of `transactionRows`. */
export async function commitChunk(
  deps: IngestDeps,
  runId: number,
  rows: SourceRow[],
  summary: IngestSummary,
  rejects: RejectsFile,
  bound: (RejectBound & { source: string }) | null,
  transactionRows: number,
  beforeTransaction: (() => void) | undefined,
): Promise<void> {
  const now = deps.clock.now();
  const prepared: PreparedRow[] = rows.map((row) => prepareRow(deps, runId, row, now));
  if (bound) checkRejectBound(bound, summary, rows, prepared);
  for (let start = 0; start < rows.length; start += transactionRows) {
    const end = start + transactionRows;
    beforeTransaction?.();
    await commitRows(deps, runId, rows.slice(start, end), prepared.slice(start, end), summary, rejects);
  }
}

/** Insert and account for prepared rows, with their audit entry, in one transaction. */
async function commitRows(
  deps: IngestDeps,
  runId: number,
  rows: SourceRow[],
  prepared: PreparedRow[],
  summary: IngestSummary,
  rejects: RejectsFile,
): Promise<void> {
  const leads = prepared.filter((p): p is PreparedLead => p.kind === 'lead');
  let outcomes: RowOutcome[] = [];
  await deps.store.db.transaction().execute(async (trx) => {
    // A row is stored unless its e-mail or its external id matches a stored lead, or a row before it
    // in this file: the unique indexes decide (insertNewLeads). Rows are told apart by their line.
    const inserted = await insertNewLeadsInBulk(
      deps.store,
      trx,
      leads.map((p) => p.lead),
    );
    const insertedByLine = new Map(inserted.map((row) => [row.source_line, row.id]));
    const duplicates: PreparedLead[] = [];
    const accepted: { lead: number; pseudonym: string; line: number; state: string }[] = [];
    for (const p of leads) {
      const id = insertedByLine.get(p.line);
      if (id !== undefined)
        accepted.push({ lead: id, pseudonym: p.pseudonym, line: p.line, state: p.lead.state });
      else duplicates.push(p);
    }
    // One batched look-up for the chunk's duplicates: which stored lead each identity matched.
    const matched =
      duplicates.length > 0
        ? await findLeadsByIdentityKeys(trx, [
            ...new Set(duplicates.flatMap((d) => identityKeysOf(d.lead).map((k) => k.key))),
          ])
        : [];
    const holders = indexByKey(matched);
    outcomes = [
      ...duplicates.map((d): RowOutcome => {
        const matches = matchesOf(d.lead, deps.dedupKey, holders);
        const { reason, field, leadId } = describeDuplicate(runId, matches);
        return {
          run_id: runId,
          line: d.line,
          outcome: 'duplicate',
          field,
          reason,
          lead_id: leadId,
          problems: [{ field: field ?? 'row', message: reason }],
          matched: matches.map((m) => m.identity),
        };
      }),
      ...prepared.flatMap((p): RowOutcome[] =>
        p.kind === 'rejected'
          ? [
              {
                run_id: runId,
                line: p.line,
                outcome: 'rejected',
                field: p.problems[0]?.field ?? null,
                reason: describeProblems(p.problems),
                lead_id: null,
                problems: p.problems,
                matched: [],
              },
            ]
          : [],
      ),
    ].sort((a, b) => a.line - b.line);
    await recordRowOutcomes(
      trx,
      outcomes.map(({ problems: _problems, matched: _matched, ...row }) => row),
    );

    const chunkCounts = {
      read: rows.length,
      accepted: accepted.length,
      duplicate: duplicates.length,
      rejected: prepared.length - leads.length,
    };
    await addIngestCounts(trx, runId, chunkCounts);
    const entry: AuditInput = {
      actor: ACTOR,
      action: 'ingest.rows',
      subject: `ingest-run:${runId}`,
      details: {
        run: runId,
        lines: [rows[0]?.line ?? 0, rows[rows.length - 1]?.line ?? 0],
        ...chunkCounts,
        // One compact row per accepted lead (ACCEPTED_COLUMNS): a chunk of 10,000 is ~0.4 MB, not 0.8.
        acceptedColumns: ACCEPTED_COLUMNS,
        accepted: accepted.map((a) => [a.lead, a.line, a.pseudonym, a.state]),
        duplicates: outcomes
          .filter((o) => o.outcome === 'duplicate')
          .map((o) => ({ line: o.line, of: o.lead_id, by: o.matched })),
        rejected: outcomes
          .filter((o) => o.outcome === 'rejected')
          .map((o) => ({ line: o.line, field: o.field, reason: o.reason })),
      },
    };
    await deps.audit.append(trx, entry);

    summary.read += chunkCounts.read;
    summary.accepted += chunkCounts.accepted;
    summary.duplicate += chunkCounts.duplicate;
    summary.rejected += chunkCounts.rejected;
    for (const a of accepted) summary.states[a.state as keyof IngestSummary['states']]++;
  });
  // The rejects file is a convenience copy; the store's ingest_outcomes is the record.
  for (const o of outcomes) rejects.write(o.line, o.problems);
}

/** A row that did not become a lead, as ingest_outcomes records it, with what the rejects file and audit say. */
interface RowOutcome extends RowOutcomeRecord {
  /** The rejects file's `problems`: the field problems, or the duplicate's reason under the identity it matched. */
  problems: FieldProblem[];
  /** A duplicate's identities that matched a stored lead, its primary one first. */
  matched: LeadIdentity[];
}
