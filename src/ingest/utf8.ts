/** The source's bytes as text: strict UTF-8, a NUL byte or a bad sequence a file-level error. */
import type { Readable } from 'node:stream';
import { IngestFileError } from './errors.js';

/** Decode bytes as strict UTF-8; a NUL byte or an invalid sequence is a file-level error with its offset. */
export async function* decodeUtf8(
  stream: Readable,
  name: string,
  onChunk: (chunk: Buffer) => void,
): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer | string>) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      onChunk(buffer);
      const nul = buffer.indexOf(0);
      if (nul !== -1) {
        throw new IngestFileError(
          'BINARY_FILE',
          name,
          `a NUL byte at byte ${offset + nul}: this is a binary file, not CSV or JSONL`,
        );
      }
      let textChunk: string;
      try {
        textChunk = decoder.decode(buffer, { stream: true });
      } catch (cause) {
        throw new IngestFileError(
          'BAD_ENCODING',
          name,
          `not valid UTF-8 (between bytes ${offset} and ${offset + buffer.length}); convert the file to UTF-8`,
          { cause },
        );
      }
      offset += buffer.length;
      if (textChunk !== '') yield textChunk;
    }
    try {
      const tail = decoder.decode();
      if (tail !== '') yield tail;
    } catch (cause) {
      throw new IngestFileError(
        'BAD_ENCODING',
        name,
        `not valid UTF-8: the file ends inside a character (byte ${offset})`,
        { cause },
      );
    }
  } catch (cause) {
    if (cause instanceof IngestFileError) throw cause;
    const code = (cause as NodeJS.ErrnoException).code;
    throw new IngestFileError('FILE_UNREADABLE', name, `read failed: ${code ?? (cause as Error).message}`, {
      cause,
    });
  } finally {
    stream.destroy();
  }
}
