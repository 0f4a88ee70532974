import { createHash } from 'node:crypto';
import { mkdirSync, type WriteStream } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import type { AuditInput, AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { DedupKeyKind } from '../config/index.js';
import { createPrivateWriteStream, isPrivateFileError, PRIVATE_DIR_MODE } from '../files/index.js';
import type { Logger } from '../log/index.js';
import type { Pseudonymizer } from '../pii/index.js';
import {
  type EligibilityRules,
  initialLeadState,
  isSyntheticExternalId,
  SYNTHETIC_ID_PREFIX,
} from '../policy/index.js';
import {
  addIngestCounts,
  createIngestRun,
  findLeadsByIdentityKeys,
  finishIngestRun,
  insertNewLeads,
  type LeadIdentity,
  type NewLead,
  type RowOutcomeRecord,
  recordRowOutcomes,
  type Store,
} from '../store/index.js';
import { describeDuplicate, identityKeysOf, indexByKey, matchesOf } from './duplicates.js';
import { IngestFileError } from './errors.js';
import { type FieldProblem, validateLead } from './lead-schema.js';
import { openSource, type SourceFormat } from './source.js';
import type { SourceRow } from './source-row.js';

export interface IngestDeps {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  pseudonymizer: Pseudonymizer;
  rules: EligibilityRules;
  dedupKey: DedupKeyKind;
  operator: string;
  /** Where rejects files go when no path is given: `<rejectsDir>/ingest-run-<id>.jsonl`. */
  rejectsDir: string;
  /** VALHALLA_REAL_DATA_INGEST=1: real data only, a synthetic lead is rejected (README). */
  realDataOnly?: boolean;
}

export interface IngestOptions {
  path: string;
  format?: SourceFormat;
  stdin?: Readable;
  /** How the run names its source when it is not a file (an upload to the admin API). */
  sourceName?: string;
  /** Who ingests, when not the configured operator (an API token's holder). */
  operator?: string;
  rejectsPath?: string;
  /** Replace a file already at `rejectsPath` (never a symbolic link); otherwise such a file is refused. */
  overwriteRejects?: boolean;
  /** Rows read before they are validated, checked against the reject bound and committed (1,000). */
  chunkSize?: number;
  /** Rows per transaction (and per audit entry); the chunk size by default. */
  transactionRows?: number;
  /** Called before each chunk's transaction begins (the upload thread lets a pause go first). */
  beforeTransaction?: () => void;
  /** The text is one JSON array of lead objects (see `openSource`). */
  jsonArray?: boolean;
  /** Stop early when this many rows are rejected (see RejectBound); none: every row is read. */
  rejectBound?: RejectBound;
  onProgress?: (progress: { bytesRead: number; totalBytes: number | null; rowsRead: number }) => void;
}

export interface IngestSummary {
  runId: number;
  source: string;
  format: SourceFormat;
  read: number;
  accepted: number;
  /** Accepted rows by the state they start in. */
  states: { pending: number; below_threshold: number; expired: number };
  duplicate: number;
  rejected: number;
  rejectsFile: string | null;
  ignoredColumns: string[];
  fileSha256: string | null;
}

const ACTOR = 'ingest';

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

/**
 * Stream a CSV or JSONL source into the store. Each row ends as accepted (pending, below threshold
 * or expired), duplicate, or rejected with its reason; each chunk of rows, its audit entry and its
 * outcomes commit in one transaction. A file-level problem stops the run (marked failed, audited);
 * chunks committed before it stay, and re-ingesting the fixed file adds nothing twice.
 */
export async function ingestFile(deps: IngestDeps, options: IngestOptions): Promise<IngestSummary> {
  const { store, audit, clock, logger } = deps;
  const chunkSize = options.chunkSize ?? 1_000;
  const transactionRows = Math.max(1, Math.min(options.transactionRows ?? chunkSize, chunkSize));
  const hash = createHash('sha256');
  const source = await openSource({
    path: options.path,
    ...(options.format ? { format: options.format } : {}),
    ...(options.stdin ? { stdin: options.stdin } : {}),
    ...(options.jsonArray ? { jsonArray: true } : {}),
    onChunk: (chunk) => hash.update(chunk),
  });
  const sourceName =
    options.sourceName ?? (options.path === '-' ? '(standard input)' : basename(options.path));
  const operator = options.operator ?? deps.operator;
  const bound = options.rejectBound ? { ...options.rejectBound, source: sourceName } : null;

  const runId = await store.db.transaction().execute(async (trx) => {
    const id = await createIngestRun(trx, {
      startedAt: clock.now(),
      source: sourceName,
      format: source.format,
      operator,
    });
    await audit.append(trx, {
      actor: ACTOR,
      action: 'ingest.started',
      subject: `ingest-run:${id}`,
      details: { run: id, source: sourceName, format: source.format, operator },
    });
    return id;
  });
  logger.info({ runId, source: sourceName, format: source.format }, 'ingest started');

  const summary: IngestSummary = {
    runId,
    source: sourceName,
    format: source.format,
    read: 0,
    accepted: 0,
    states: { pending: 0, below_threshold: 0, expired: 0 },
    duplicate: 0,
    rejected: 0,
    rejectsFile: null,
    ignoredColumns: [],
    fileSha256: null,
  };
  // The default file is the product's own, in its own folder: a new run with its name replaces it.
  const rejects = new RejectsFile(
    options.rejectsPath ?? join(deps.rejectsDir, `ingest-run-${runId}.jsonl`),
    runId,
    options.rejectsPath === undefined || options.overwriteRejects === true,
  );

  try {
    const commit = (rows: SourceRow[]) =>
      commitChunk(deps, runId, rows, summary, rejects, bound, transactionRows, options.beforeTransaction);
    let chunk: SourceRow[] = [];
    for await (const row of source.rows) {
      chunk.push(row);
      if (chunk.length >= chunkSize) {
        await commit(chunk);
        chunk = [];
        options.onProgress?.({
          bytesRead: source.bytesRead(),
          totalBytes: source.size,
          rowsRead: summary.read,
        });
      }
    }
    if (chunk.length > 0) await commit(chunk);
    options.onProgress?.({ bytesRead: source.bytesRead(), totalBytes: source.size, rowsRead: summary.read });
    // Inside the try: a rejects file that cannot be written fails the run instead of leaving it running.
    summary.rejectsFile = await rejects.close();
  } catch (error) {
    await rejects.close().catch(() => undefined);
    // The audit chain is immutable: it gets only messages this module wrote (which never hold values);
    // any other error is named by type and code, its message (which could quote data) stays out.
    const message = describeFailure(error);
    try {
      await store.db.transaction().execute(async (trx) => {
        await audit.append(trx, {
          actor: ACTOR,
          action: 'ingest.failed',
          subject: `ingest-run:${runId}`,
          details: { run: runId, error: message, ...counts(summary) },
        });
        await finishIngestRun(trx, runId, {
          finishedAt: clock.now(),
          status: 'failed',
          fileSha256: null,
          error: message,
        });
      });
    } catch (recordError) {
      // The database itself may be what failed: report the first error, log this one.
      logger.error({ runId, err: recordError }, 'could not record the failed ingest run');
    }
    logger.error({ runId, err: error, ...counts(summary) }, 'ingest failed');
    throw error;
  }

  summary.fileSha256 = hash.digest('hex');
  summary.ignoredColumns = source.ignoredColumns();
  await store.db.transaction().execute(async (trx) => {
    await audit.append(trx, {
      actor: ACTOR,
      action: 'ingest.finished',
      subject: `ingest-run:${runId}`,
      details: { run: runId, sha256: summary.fileSha256, ...counts(summary), states: summary.states },
    });
    await finishIngestRun(trx, runId, {
      finishedAt: clock.now(),
      status: 'completed',
      fileSha256: summary.fileSha256,
      error: null,
    });
  });
  logger.info({ runId, ...counts(summary) }, 'ingest finished');
  return summary;
}

function describeFailure(error: unknown): string {
  if (error instanceof IngestFileError) return error.message;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return `${error.name}${typeof code === 'string' ? ` (${code})` : ''}: the ingest stopped on an internal error; see the log`;
  }
  return 'the ingest stopped on an internal error; see the log';
}

function counts(summary: IngestSummary) {
  return {
    read: summary.read,
    accepted: summary.accepted,
    duplicate: summary.duplicate,
    rejected: summary.rejected,
  };
}

type PreparedRow =
  | { kind: 'lead'; line: number; lead: NewLead; pseudonym: string }
  | { kind: 'rejected'; line: number; problems: FieldProblem[] };
type PreparedLead = Extract<PreparedRow, { kind: 'lead' }>;

/** Validate one chunk of rows, check the reject bound, then commit it in transactions of `transactionRows`. */
async function commitChunk(
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
  if (bound) {
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
    const inserted = await insertNewLeads(
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
        accepted: accepted,
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

function prepareRow(deps: IngestDeps, runId: number, row: SourceRow, now: number): PreparedRow {
  if ('unreadable' in row)
    return { kind: 'rejected', line: row.line, problems: [{ field: 'row', message: row.unreadable }] };
  const result = validateLead(row.fields, { now, requireExternalId: deps.dedupKey === 'external_id' });
  if (!result.ok) return { kind: 'rejected', line: row.line, problems: result.problems };
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
    },
  };
}

export function describeProblems(problems: FieldProblem[]): string {
  return problems.map((p) => (p.field === 'row' ? p.message : `${p.field}: ${p.message}`)).join('; ');
}

const REJECTS_REFUSED: Partial<Record<string, string>> = {
  EXISTS: 'the rejects file exists: it is not overwritten unless asked',
  SYMLINK: 'the rejects file is a symbolic link: refused (a link is never followed)',
};

/**
 * The rejects file: one JSON line per row not stored, rejected or duplicate (line, field, reason;
 * never the row's values). A duplicate's field is the identity that matched.
 */
class RejectsFile {
  #stream: WriteStream | null = null;
  /** The first error opening or writing the file: it fails the run (it would otherwise be unhandled). */
  #error: unknown = null;
  constructor(
    readonly path: string,
    readonly runId: number,
    readonly overwrite: boolean,
  ) {}

  write(line: number, problems: FieldProblem[]): void {
    if (this.#error !== null) throw this.#failure();
    if (!this.#stream) {
      try {
        mkdirSync(dirname(this.path), { recursive: true, mode: PRIVATE_DIR_MODE });
        // 0600, never through a symbolic link, never over a file unless asked.
        this.#stream = createPrivateWriteStream(this.path, { overwrite: this.overwrite });
      } catch (error) {
        this.#error = error;
        throw this.#failure();
      }
      this.#stream.on('error', (error) => {
        this.#error ??= error;
      });
    }
    this.#stream.write(`${JSON.stringify({ run: this.runId, line, problems })}\n`);
  }

  /** Flush and close; returns the path when anything was written. */
  async close(): Promise<string | null> {
    const stream = this.#stream;
    this.#stream = null;
    if (stream && !stream.closed) {
      await new Promise<void>((resolve) => {
        stream.once('close', () => resolve());
        stream.end();
      });
    }
    if (this.#error !== null) throw this.#failure();
    return stream ? this.path : null;
  }

  #failure(): IngestFileError {
    const cause = isPrivateFileError(this.#error) ? this.#error.cause : this.#error;
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    const refusal = isPrivateFileError(this.#error) ? REJECTS_REFUSED[this.#error.code] : undefined;
    return new IngestFileError(
      'REJECTS_UNWRITABLE',
      this.path,
      refusal ?? `cannot write the rejects file: ${code ?? (this.#error as Error).message}`,
      { cause: this.#error },
    );
  }
}
