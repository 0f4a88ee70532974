/** The rejects file: a private JSONL copy of the rows not stored, opened on the first one. */
import { mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { createPrivateWriteStream, isPrivateFileError, PRIVATE_DIR_MODE } from '../files/index.js';
import { IngestFileError } from './errors.js';
import type { FieldProblem } from './lead-schema.js';

const REJECTS_REFUSED: Partial<Record<string, string>> = {
  EXISTS: 'the rejects file exists: it is not overwritten unless asked',
  SYMLINK: 'the rejects file is a symbolic link: refused (a link is never followed)',
};

/**
 * The rejects file: one JSON line per row not stored, rejected or duplicate (line, field, reason;
 * never the row's values). A duplicate's field is the identity that matched.
 */
export class RejectsFile {
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
