/** The ingest run: a source streamed into the store chunk by chunk, started, finished or failed in the audit. */
import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  createIngestRun,
  deferCommitSync,
  finishIngestRun,
  foldLogLess,
  journalInMemory,
  widenPageCache,
} from '../store/index.js';
import { commitChunk } from './commit.js';
import { IngestFileError } from './errors.js';
import type { RejectBound } from './reject-bound.js';
import { RejectsFile } from './rejects-file.js';
import { ACTOR, type IngestDeps, type IngestSummary } from './run.js';
import { openSource, type SourceFormat } from './source.js';
import type { SourceRow } from './source-row.js';

/**
 * The SQLite page cache while an ingest runs (2 MB by default). Measured at 1,000,000 leads: 8 MB and
 * 64 MB ingest at the same speed within noise (the random pages of the unique indexes outnumber any
 * cache here), and 64 MB costs 57 MB more peak RSS.
 */
export const INGEST_PAGE_CACHE_MIB = 8;
/**
 * Pages of write-ahead log between two folds into the database while an ingest runs (1,000 by default):
 * 256 MiB. The default folds after every transaction and writes each random index page again each
 * time. Measured at 1,000,000 leads (bench/ingest): 64 MiB 13.8k leads/s, 256 MiB 15.2k.
 */
export const INGEST_LOG_FOLD_PAGES = 65_536;
/**
 * Bytes of source a chunk holds at most when no reject bound is set: 1,000 rows of up to 64 KB each
 * (MAX_RECORD_BYTES) would be 64 MB of rows in memory at once; 8 MiB is about 70,000 ordinary rows, so
 * only rows far larger than leads are ever cut short by it.
 */
const MAX_CHUNK_BYTES = 8 * 1024 * 1024;
/** Rows read between two progress reports. */
const PROGRESS_ROWS = 1_000;

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
  /**
   * Rows read before they are validated, checked against the reject bound (once a chunk) and
   * committed: 1,000 (CHUNK_ROWS).
   */
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

/**
 * Stream a CSV or JSONL source into the store. Each row ends as accepted (pending, below threshold
 * or expired), duplicate, or rejected with its reason; each chunk of rows, its audit entry and its
 * outcomes commit in one transaction. A file-level problem stops the run (marked failed, audited);
 * chunks committed before it stay, and re-ingesting the fixed file adds nothing twice.
 */
/**
 * The most rows one ingest transaction commits: SQLite has one writer, and a pause or a rollback
 * committed meanwhile (by the running service, from the dashboard or the CLI) waits for the ingest's
 * open transaction. 1,000 rows hold the lock well under a tenth of a second; 10,000 held it for a
 * second and more.
 */
export const MAX_TRANSACTION_ROWS = 1_000;

/**
 * Rows read and validated before they are committed. Measured with the binary at 1,000,000 leads: the
 * same speed as chunks of 10,000, and a peak RSS of 179 MB against 205 MB (a chunk's rows no longer
 * live long enough to be kept between collections).
 */
const CHUNK_ROWS = 1_000;

export async function ingestFile(deps: IngestDeps, options: IngestOptions): Promise<IngestSummary> {
  const { store, audit, clock, logger } = deps;
  // Rows are read, validated and committed 1,000 at a time (CHUNK_ROWS, MAX_TRANSACTION_ROWS).
  const chunkSize = options.chunkSize ?? CHUNK_ROWS;
  const transactionRows = Math.max(1, Math.min(options.transactionRows ?? MAX_TRANSACTION_ROWS, chunkSize));
  const hash = createHash('sha256');
  const source = await openSource({
    path: options.path,
    ...(options.format ? { format: options.format } : {}),
    ...(options.stdin ? { stdin: options.stdin } : {}),
    ...(options.jsonArray ? { jsonArray: true } : {}),
    keptColumns: (deps.attributes ?? []).map((a) => a.name),
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

  // The connection's settings changed for the run, each put back (last first) before its last commit. One
  // that cannot be put back is logged, and the others still are; the run's own error is the one reported.
  const putBack: (() => void)[] = [];
  const restoreSettings = () => {
    for (const restore of putBack.splice(0).reverse()) {
      try {
        restore();
      } catch (error) {
        logger.error({ runId, err: error }, 'ingest: a connection setting could not be put back');
      }
    }
  };
  try {
    putBack.push(widenPageCache(store, INGEST_PAGE_CACHE_MIB));
    putBack.push(foldLogLess(store, INGEST_LOG_FOLD_PAGES));
    putBack.push(journalInMemory(store));
    // The chunks commit without a disk flush each (a setting of the connection: nothing else commits on
    // it while the run lasts). Put back before the run's last commit (finished or failed), which then
    // flushes the log and every chunk before it, before the run reports. A connection that already
    // commits without flushes (the upload thread's) syncs the log itself before it answers (syncCommits).
    putBack.push(deferCommitSync(store));
    const commit = (rows: SourceRow[]) =>
      commitChunk(deps, runId, rows, summary, rejects, bound, transactionRows, options.beforeTransaction);
    let chunk: SourceRow[] = [];
    let chunkStart = source.bytesRead();
    let rowsRead = 0;
    for await (const row of source.rows) {
      chunk.push(row);
      rowsRead++;
      // A reject bound is checked a chunk at a time: its chunks stay whole (1,000 rows, at most 64 MB).
      if (
        chunk.length >= chunkSize ||
        (bound === null && source.bytesRead() - chunkStart >= MAX_CHUNK_BYTES)
      ) {
        await commit(chunk);
        chunk = [];
        chunkStart = source.bytesRead();
      }
      // Progress every 1,000 rows read, whatever the chunk size.
      if (rowsRead % PROGRESS_ROWS === 0) {
        options.onProgress?.({ bytesRead: source.bytesRead(), totalBytes: source.size, rowsRead });
      }
    }
    if (chunk.length > 0) await commit(chunk);
    options.onProgress?.({ bytesRead: source.bytesRead(), totalBytes: source.size, rowsRead });
    // Inside the try: a rejects file that cannot be written fails the run instead of leaving it running.
    summary.rejectsFile = await rejects.close();
  } catch (error) {
    restoreSettings();
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
  } finally {
    restoreSettings();
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
