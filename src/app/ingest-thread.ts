/**
 * The upload thread (see upload-ingest.ts): runs `ingestFile` on bodies the server hands it chunk by
 * chunk, with a database connection of its own. Loaded by `new Worker`, never imported.
 */
import { Readable } from 'node:stream';
import { parentPort, workerData } from 'node:worker_threads';
import { createAuditLog } from '../audit/index.js';
import { type Clock, systemClock } from '../clock/index.js';
import { ingestFile, isIngestFileError, UPLOAD_REJECT_BOUND } from '../ingest/index.js';
import { createLogger } from '../log/index.js';
import { createPseudonymizer } from '../pii/index.js';
import { deferCommitSync, openStore, type Store, syncCommits } from '../store/index.js';
import { ingestDepsOf } from './ingest-deps.js';
import type { FromIngestThread, IngestThreadData, ToIngestThread } from './upload-ingest.js';

/**
 * Rows per transaction (and audit entry) of an upload; the reject bound still looks at chunks of
 * 1,000. On SQLite a transaction of the thread holds the write lock that a pause on the server's
 * loop must wait for, and better-sqlite3 waits synchronously, in SQLite's growing busy sleeps: with
 * 1,000 leads a transaction (bench/control-plane) held a pause up to 200 ms; with 200, well under 100.
 */
const UPLOAD_TRANSACTION_ROWS = 200;

const port = parentPort;
if (port === null) throw new Error('ingest-thread.js runs as a worker thread only');
const { config, controlWrites } = workerData as IngestThreadData;
const pendingControlWrites = new Int32Array(controlWrites);
/**
 * Longest a transaction of the upload waits for control-plane writes (see UploadIngester.ahead):
 * each takes milliseconds; the bound keeps a count left raised by a defect from stopping uploads.
 */
const MAX_CONTROL_WAIT_MS = 5_000;

/** Before each transaction: let a pause or rollback in progress on the server's loop commit first. */
function letControlWritesGoFirst(): void {
  const deadline = performance.now() + MAX_CONTROL_WAIT_MS;
  for (let pending = Atomics.load(pendingControlWrites, 0); pending > 0; ) {
    const left = deadline - performance.now();
    if (left <= 0) return;
    // This thread only: the server's loop is not blocked by the wait.
    Atomics.wait(pendingControlWrites, 0, pending, left);
    pending = Atomics.load(pendingControlWrites, 0);
  }
}
const logger = createLogger({ level: config.logLevel, file: config.logFile });
let store: Promise<Store> | null = null;
/** The body of the upload being read: fed by the server's chunks, pulled by the ingest. */
let input: { id: number; stream: Readable } | null = null;

const send = (message: FromIngestThread) => port.postMessage(message);

async function ingest(message: Extract<ToIngestThread, { type: 'start' }>): Promise<void> {
  const { id } = message;
  const stream = new Readable({
    // Asked for only when the ingest has read what it had: one chunk in flight at a time.
    read: () => send({ type: 'pull', id }),
  });
  input = { id, stream };
  try {
    // The server's app migrated the schema and checked the secret before it served anything.
    store ??= openStore(config.database, { migrate: false }).then((opened) => {
      // The upload's transactions commit without an fsync each, and the log is synced once before the
      // answer (syncCommits). Synced at every commit, each transaction held the one write lock through
      // a disk flush, and a pause waited behind it: up to 430 ms on a busy disk (bench/control-plane).
      deferCommitSync(opened);
      return opened;
    });
    const opening = store;
    // A database that could not be opened (PostgreSQL down) is tried again by the next upload.
    const opened = await opening.catch((error: unknown) => {
      if (store === opening) store = null;
      throw error;
    });
    if (config.pseudonymSecret === null) throw new Error('no pseudonym secret');
    const at = message.at;
    const clock: Clock = at === null ? systemClock : { now: () => at };
    const deps = ingestDepsOf(config, {
      store: opened,
      audit: createAuditLog(opened, clock),
      clock,
      logger,
      pseudonymizer: createPseudonymizer(config.pseudonymSecret),
    });
    const summary = await ingestFile(deps, {
      path: '-',
      stdin: stream,
      format: message.format,
      jsonArray: message.jsonArray,
      sourceName: message.sourceName,
      operator: message.operator,
      rejectBound: UPLOAD_REJECT_BOUND,
      transactionRows: UPLOAD_TRANSACTION_ROWS,
      beforeTransaction: letControlWritesGoFirst,
    });
    syncCommits(config.database);
    send({ type: 'done', id, summary });
  } catch (error) {
    try {
      // Chunks committed before a failure stay (as after any file-level error): on disk before the answer.
      syncCommits(config.database);
    } catch (syncError) {
      logger.error({ err: syncError }, 'upload ingest: syncing the write-ahead log failed');
    }
    if (!isIngestFileError(error)) logger.error({ err: error }, 'upload ingest failed');
    send({
      type: 'failed',
      id,
      fileError: isIngestFileError(error)
        ? { code: error.code, source: error.source, message: error.message }
        : null,
      name: error instanceof Error ? error.name : typeof error,
    });
  } finally {
    input = null;
    stream.destroy();
  }
}

port.on('message', (message: ToIngestThread) => {
  switch (message.type) {
    case 'start':
      void ingest(message);
      return;
    case 'chunk':
      if (input?.id === message.id)
        input.stream.push(Buffer.from(message.bytes.buffer, message.bytes.byteOffset, message.bytes.length));
      return;
    case 'end':
      if (input?.id === message.id) input.stream.push(null);
      return;
    case 'cut':
      if (input?.id === message.id) input.stream.destroy(new Error('the upload was cut off before its end'));
      return;
    default: {
      const unknown: never = message;
      throw new Error(`unknown message ${JSON.stringify(unknown)}`);
    }
  }
});
