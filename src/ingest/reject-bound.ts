/** The reject bound: when an input is no longer worth reading, the uploads' bound, and the check before a chunk commits. */
import { IngestFileError } from './errors.js';
import { describeProblems, type PreparedRow } from './prepare.js';
import type { IngestSummary } from './run.js';
import type { SourceRow } from './source-row.js';

/**
 * When an input is no longer worth reading: at least `rejected` rows rejected, and more than
 * `share` of the rows read so far. Checked before each chunk commits (with the chunk's own rows
 * counted), so an input of nothing but bad rows stops at its first chunk having stored nothing but
 * one `ingest.failed` entry, instead of an outcome row and an audit line for each of millions.
 */
export interface RejectBound {
  rejected: number;
  share: number;
}

/**
 * Uploads to the admin API: the first 1,000 rows all rejected stop it (one chunk), as does any point
 * past 1,000 rejects where they are the majority. A file with a bad column is caught at once; one
 * with scattered bad rows is read whole, every row accounted for. Accepted rows are always audited.
 */
export const UPLOAD_REJECT_BOUND: RejectBound = Object.freeze({ rejected: 1_000, share: 0.5 });

/** Throws when the rows read so far, this chunk's counted, pass the bound; called before the chunk commits. */
export function checkRejectBound(
  bound: RejectBound & { source: string },
  summary: IngestSummary,
  rows: SourceRow[],
  prepared: PreparedRow[],
): void {
  const leads = prepared.filter((p) => p.kind === 'lead');
  const rejected = summary.rejected + prepared.length - leads.length;
  const read = summary.read + rows.length;
  if (rejected >= bound.rejected && rejected > bound.share * read) {
    // Thrown before this chunk commits: the run fails with this one message (audited once by
    // ingestFile as `ingest.failed`); chunks committed before stay, as after any file-level error.
    const firstRejected = prepared.find((p) => p.kind === 'rejected');
    throw new IngestFileError(
      'TOO_MANY_REJECTS',
      bound.source,
      `stopped at line ${rows[rows.length - 1]?.line ?? 0}: ${rejected} of the ${read} rows read were rejected ` +
        `(the limit is ${bound.rejected} rejected rows and more than ${Math.round(bound.share * 100)}% of those read)` +
        (firstRejected?.kind === 'rejected'
          ? `; line ${firstRejected.line}: ${describeProblems(firstRejected.problems)}`
          : '') +
        `; ${summary.read === 0 ? 'nothing was stored' : `the ${summary.read} rows before it were recorded`}; fix the input and send it again`,
    );
  }
}
