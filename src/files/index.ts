/**
 * Private files: the data folder (0700) and every file the product writes (0600: the database and
 * its WAL and SHM, keys, rejects, reports, exports, logs), whatever the umask. An output file is
 * opened without following a symbolic link and, unless the caller says it may, without replacing
 * what is there: a link planted where a report goes must not turn the write onto its target.
 */
import {
  chmodSync,
  closeSync,
  constants,
  createWriteStream,
  existsSync,
  fchmodSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  statSync,
  type WriteStream,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder the product is installed in: the nearest one above this module with a package.json
 * (the same from the sources, the built tree and the bundled command line).
 */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return from;
  }
}

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;
/** Bits that let the group or others in. */
const SHARED_BITS = 0o077;

export type PrivateFileErrorCode = 'EXISTS' | 'SYMLINK' | 'NOT_A_FILE' | 'TOO_OPEN' | 'UNWRITABLE';

/** A file or folder that cannot be made private, or an output that would replace something. */
export class PrivateFileError extends Error {
  override readonly name = 'PrivateFileError';
  constructor(
    readonly code: PrivateFileErrorCode,
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isPrivateFileError(error: unknown): error is PrivateFileError {
  return error instanceof PrivateFileError;
}

const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, '0');

/**
 * Create the folder (and missing parents) as 0700, or tighten an existing one that lets the group or
 * others in. Returns what was tightened (for the log); refuses a folder it cannot tighten.
 */
export function ensurePrivateDir(path: string): string | null {
  mkdirSync(path, { recursive: true, mode: PRIVATE_DIR_MODE });
  return tighten(path, PRIVATE_DIR_MODE, 'folder');
}

/**
 * An existing file that lets the group or others in is tightened to owner-only (its owner's bits are
 * kept: a read-only file stays read-only). Returns what was tightened; nothing when the file is absent.
 */
export function tightenExistingFile(path: string): string | null {
  try {
    statSync(path);
  } catch {
    return null;
  }
  return tighten(path, PRIVATE_FILE_MODE, 'file');
}

function tighten(path: string, wanted: number, what: 'file' | 'folder'): string | null {
  const mode = statSync(path).mode & 0o777;
  if ((mode & SHARED_BITS) === 0) return null;
  const tightened = mode & ~SHARED_BITS & wanted;
  try {
    chmodSync(path, tightened);
  } catch (cause) {
    throw new PrivateFileError(
      'TOO_OPEN',
      path,
      `the ${what} ${path} is open to other users (mode ${octal(mode)}) and cannot be tightened (${(cause as NodeJS.ErrnoException).code ?? 'error'}): run chmod ${octal(wanted)} on it`,
      { cause },
    );
  }
  return `${path}: mode ${octal(mode)} tightened to ${octal(tightened)}`;
}

export interface OutputOptions {
  /** Replace a regular file that is already there (never a link or anything else). */
  overwrite?: boolean;
}

/**
 * Open a file for writing, mode 0600: never through a symbolic link (the last component), never
 * replacing an existing file unless `overwrite`, and then only a regular file, tightened to 0600.
 */
export function openPrivateFile(path: string, options: OutputOptions = {}): number {
  const flags =
    constants.O_WRONLY |
    constants.O_CREAT |
    constants.O_NOFOLLOW |
    (options.overwrite ? constants.O_TRUNC : constants.O_EXCL);
  let fd: number;
  try {
    fd = openSync(path, flags, PRIVATE_FILE_MODE);
  } catch (cause) {
    throw outputError(path, cause, options);
  }
  try {
    if (!fstatSync(fd).isFile()) {
      throw new PrivateFileError('NOT_A_FILE', path, `${path} is not a regular file: refused`);
    }
    // The umask can only narrow a new file's mode; a file replaced keeps its old one unless told.
    fchmodSync(fd, PRIVATE_FILE_MODE);
    return fd;
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

function outputError(path: string, cause: unknown, options: OutputOptions): PrivateFileError {
  const code = (cause as NodeJS.ErrnoException).code;
  if (code === 'ELOOP' || (code === 'EEXIST' && isSymlink(path))) {
    return new PrivateFileError(
      'SYMLINK',
      path,
      `${path} is a symbolic link: refused (it is never followed)`,
      {
        cause,
      },
    );
  }
  if (code === 'EEXIST' && isDirectory(path)) {
    const eisdir = Object.assign(new Error(`${path} is a folder`), { code: 'EISDIR' });
    return new PrivateFileError('NOT_A_FILE', path, `${path} is a folder: refused`, { cause: eisdir });
  }
  if (code === 'EEXIST' && !options.overwrite) {
    return new PrivateFileError(
      'EXISTS',
      path,
      `${path} exists: refused (it is not overwritten unless asked)`,
      {
        cause,
      },
    );
  }
  return new PrivateFileError('UNWRITABLE', path, `cannot write ${path}: ${code ?? String(cause)}`, {
    cause,
  });
}

function isDirectory(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** `openPrivateFile` as a stream (the caller ends it). */
export function createPrivateWriteStream(path: string, options: OutputOptions = {}): WriteStream {
  return createWriteStream(path, { fd: openPrivateFile(path, options) });
}

/** Write a whole file with `openPrivateFile`'s rules. */
export function writePrivateFile(path: string, data: string | Uint8Array, options: OutputOptions = {}): void {
  const fd = openPrivateFile(path, options);
  try {
    writeFileSync(fd, data);
  } finally {
    closeSync(fd);
  }
}
