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
import { openStore, type Store } from '../store/index.js';
import { ingestDepsOf } from './ingest-deps.js';
import type { FromIngestThread, IngestThreadData, ToIngestThread } from './upload-ingest.js';

const port = parentPort;
if (port === null) throw new Error('ingest-thread.js runs as a worker thread only');
const { config } = workerData as IngestThreadData;
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
    store ??= openStore(config.database, { migrate: false });
    const opened = await store;
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
    });
    send({ type: 'done', id, summary });
  } catch (error) {
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
