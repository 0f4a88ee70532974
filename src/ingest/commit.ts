/** Committing a chunk of rows: each row's outcome (accepted, duplicate, rejected), its counts and its audit entry. */
import { createHash } from 'node:crypto';
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

/** The letter of each state a lead can be stored in, in `acceptedLeads.states`. */
const STATE_LETTERS: Readonly<Record<string, string>> = { pending: 'p', below_threshold: 'b', expired: 'e' };

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
        acceptedLeads: acceptedLeadsEntry(accepted),
        duplicates: outcomes
          .filter((o) => o.outcome === 'duplicate')
          .map((o) => ({ line: o.line, of: o.lead_id, by: o.matched })),
        // Beside the `rejected` count (chunkCounts), not in its place.
        rejectedRows: outcomes
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

/**
 * The accepted leads of a transaction as its `ingest.rows` entry names them, a few bytes a lead instead
 * of a row each (a row each made the chain a fifth of the database):
 *
 * - `runs`: `[first lead, first line, count]` for each run of leads whose ids and lines both step by one
 *   (a transaction's leads get consecutive ids; a duplicate or rejected line starts a new run);
 * - `states`: each lead's state when stored, a letter each in lead order (`p` pending, `b` below
 *   threshold, `e` expired);
 * - `sha256`: the SHA-256 of `lead,line,pseudonym,state` lines (each ending in a line feed), one per lead
 *   in lead order, so the entry also binds each lead's pseudonym: anyone holding the leads table can
 *   recompute it from the leads' ids, lines and dedup keys (`L-` and the first 20 hex digits).
 */
export function acceptedLeadsEntry(
  accepted: readonly { lead: number; line: number; pseudonym: string; state: string }[],
): { runs: [number, number, number][]; states: string; sha256: string } {
  const runs: [number, number, number][] = [];
  const hash = createHash('sha256');
  let states = '';
  for (const a of accepted) {
    const last = runs.at(-1);
    if (last !== undefined && a.lead === last[0] + last[2] && a.line === last[1] + last[2]) last[2]++;
    else runs.push([a.lead, a.line, 1]);
    states += STATE_LETTERS[a.state] ?? '?';
    hash.update(`${a.lead},${a.line},${a.pseudonym},${a.state}\n`);
  }
  return { runs, states, sha256: hash.digest('hex') };
}

/** A row that did not become a lead, as ingest_outcomes records it, with what the rejects file and audit say. */
interface RowOutcome extends RowOutcomeRecord {
  /** The rejects file's `problems`: the field problems, or the duplicate's reason under the identity it matched. */
  problems: FieldProblem[];
  /** A duplicate's identities that matched a stored lead, its primary one first. */
  matched: LeadIdentity[];
}
