import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { type Clock, systemClock } from '../clock/index.js';
import { type Config, PACKAGE_ROOT } from '../config/index.js';
import {
  IngestFileError,
  type IngestFileErrorCode,
  type IngestSummary,
  type SourceFormat,
} from '../ingest/index.js';
import type { Logger } from '../log/index.js';
import { AppError } from './errors.js';

/**
 * Uploads to the admin API are read, validated and stored in a worker thread of their own, never on
 * the event loop that answers pause, rollback and /healthz. Measured before:
 * a 10 MB upload parsed and stored on that loop held a pause for 92 s and /healthz for 32 s, and the
 * supervisor (whose loop it also was) took its own stall for a missed heartbeat. Here the server's
 * loop only hands the body on, one chunk per request of the thread (the thread pulls; nothing piles
 * up), and waits for the summary.
 *
 * Why a thread and not a process: it shares the server's process (no second Node.js runtime of
 * 40-60 MB within the service's 512 MB), its heap is capped on its own (`resourceLimits`), and it
 * opens its own database connection, so its transactions never run on the server's loop. One thread
 * serves one upload at a time (the same rows would otherwise race for the same locks); others wait
 * their turn, and past MAX_WAITING they are refused rather than held.
 */

/** The built thread: integration tests run the server from source, the thread always from dist/. */
export const INGEST_THREAD_FILE = join(PACKAGE_ROOT, 'dist', 'src', 'app', 'ingest-thread.js');
/**
 * The thread's heap: it holds a chunk of 1,000 prepared rows, its audit entries and one 64 KB record
 * at most, whatever the body's size (bench/control-plane: the whole service 70 MB over idle at its
 * peak, for 10 MB of valid leads). The cap turns a defect into a failed upload, not a service past
 * its 512 MB.
 */
const THREAD_HEAP_MB = 64;
/** Uploads waiting for the thread beyond the one it reads: each holds only its unread socket. */
const MAX_WAITING = 8;

export interface UploadIngest {
  /** The body, read as the thread asks for it. */
  body: AsyncIterable<Buffer | string>;
  format: SourceFormat;
  /** The body is one JSON array of lead objects. */
  jsonArray: boolean;
  sourceName: string;
  operator: string;
}

export interface UploadIngester {
  /** Ingest one upload in the thread; rejects with the run's IngestFileError as `ingestFile` does. */
  ingest(upload: UploadIngest): Promise<IngestSummary>;
  /**
   * Run a control-plane write (a pause, a rollback) ahead of the thread: its next transaction waits
   * until `work` ends. On SQLite there is one writer at a time, and this process waits for the lock
   * synchronously; without this, a pause queued behind transaction after transaction of a 10 MB
   * upload took up to 480 ms (bench/control-plane); with it, at most the one in progress.
   */
  ahead<T>(work: () => Promise<T>): Promise<T>;
  /** End the thread (waiting uploads fail). Safe twice. */
  close(): Promise<void>;
}

/** The thread's start: what it opens once. */
export interface IngestThreadData {
  config: Config;
  /** One Int32: the control-plane writes in progress (see `ahead`); the thread waits while > 0. */
  controlWrites: SharedArrayBuffer;
}

export type ToIngestThread =
  | {
      type: 'start';
      id: number;
      format: SourceFormat;
      jsonArray: boolean;
      sourceName: string;
      operator: string;
      /**
       * The time the run reads: null for the system clock; a virtual clock's reading at the upload
       * otherwise (a virtual clock moves only when its owner moves it, so it stands still meanwhile).
       */
      at: number | null;
    }
  | { type: 'chunk'; id: number; bytes: Uint8Array }
  | { type: 'end'; id: number }
  | { type: 'cut'; id: number };

export type FromIngestThread =
  | { type: 'pull'; id: number }
  | { type: 'done'; id: number; summary: IngestSummary }
  | {
      type: 'failed';
      id: number;
      /** An IngestFileError's code, source and message; otherwise only its type (its message stays in the log). */
      fileError: { code: IngestFileErrorCode; source: string; message: string } | null;
      name: string;
    };

/** The upload ingester of an app (see the module comment). */
export function createUploadIngester(options: {
  config: Config;
  clock: Clock;
  logger: Logger;
  threadFile?: string;
}): UploadIngester {
  const { config, clock, logger } = options;
  let thread: Worker | null = null;
  let closed = false;
  let nextId = 1;
  let waiting = 0;
  let turn: Promise<unknown> = Promise.resolve();
  /** The upload the thread is reading, told when the thread ends under it. */
  let current: { id: number; fail: (error: Error) => void } | null = null;
  const controlWrites = new SharedArrayBuffer(4);
  const pendingControlWrites = new Int32Array(controlWrites);

  function startThread(): Worker {
    const worker = new Worker(options.threadFile ?? INGEST_THREAD_FILE, {
      workerData: { config, controlWrites } satisfies IngestThreadData,
      resourceLimits: { maxOldGenerationSizeMb: THREAD_HEAP_MB, maxYoungGenerationSizeMb: 16 },
      // Its log lines go to the configured file or standard error directly, as the app's do.
      stdout: false,
      stderr: false,
    });
    // An idle thread does not keep a CLI or a test process alive; close() ends it all the same.
    worker.unref();
    const gone = (error: Error) => {
      if (thread === worker) thread = null;
      current?.fail(error);
    };
    worker.on('error', (error) => {
      logger.error({ err: error }, 'the upload thread failed');
      gone(new Error('the upload thread failed', { cause: error }));
    });
    worker.on('exit', (code) => gone(new Error(`the upload thread exited (code ${code})`)));
    return worker;
  }

  async function run(upload: UploadIngest): Promise<IngestSummary> {
    if (closed) throw new Error('the upload ingester is closed');
    thread ??= startThread();
    const worker = thread;
    const id = nextId++;
    const body = upload.body[Symbol.asyncIterator]();
    let bodyDone = false;
    const summary = await new Promise<IngestSummary>((resolve, reject) => {
      const settle = () => {
        worker.off('message', onMessage);
        current = null;
      };
      current = {
        id,
        fail: (error) => {
          settle();
          reject(error);
        },
      };
      const send = (message: ToIngestThread) => worker.postMessage(message);
      const pull = async () => {
        try {
          const next = await body.next();
          if (next.done) {
            bodyDone = true;
            send({ type: 'end', id });
          } else {
            const chunk = next.value;
            send({ type: 'chunk', id, bytes: typeof chunk === 'string' ? Buffer.from(chunk) : chunk });
          }
        } catch {
          // The client went away mid-body: the run fails as a file cut short, never read as complete.
          bodyDone = true;
          send({ type: 'cut', id });
        }
      };
      const onMessage = (message: FromIngestThread) => {
        if (message.id !== id) return;
        if (message.type === 'pull') {
          void pull();
          return;
        }
        settle();
        if (message.type === 'done') {
          resolve(message.summary);
          return;
        }
        if (message.fileError) {
          const { code, source, message: text } = message.fileError;
          const error = new IngestFileError(code, source, '');
          error.message = text;
          reject(error);
        } else {
          reject(new Error(`the upload's ingest failed (${message.name}); see the log`));
        }
      };
      worker.on('message', onMessage);
      send({
        type: 'start',
        id,
        format: upload.format,
        jsonArray: upload.jsonArray,
        sourceName: upload.sourceName,
        operator: upload.operator,
        at: clock === systemClock ? null : clock.now(),
      });
    }).finally(async () => {
      // The run may end before the body does (a bad header, the reject bound): the rest is read and
      // dropped (at most the 10 MB limit, unparsed), so the client's request completes and the
      // connection can carry the answer.
      for (let n = 0; !bodyDone && n < 1_000_000; n++) {
        try {
          bodyDone = (await body.next()).done === true;
        } catch {
          bodyDone = true;
        }
      }
    });
    return summary;
  }

  return {
    ingest(upload) {
      if (waiting >= MAX_WAITING) {
        return Promise.reject(
          new AppError('UPLOADS_BUSY', `${waiting} uploads are waiting already: send it again later`),
        );
      }
      waiting++;
      const result = turn.then(() => {
        waiting--;
        return run(upload);
      });
      turn = result.catch(() => undefined);
      return result;
    },
    async ahead(work) {
      Atomics.add(pendingControlWrites, 0, 1);
      try {
        return await work();
      } finally {
        Atomics.sub(pendingControlWrites, 0, 1);
        Atomics.notify(pendingControlWrites, 0);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      const worker = thread;
      thread = null;
      await worker?.terminate();
    },
  };
}
