import { lstatSync } from 'node:fs';
import { resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { type Command, Option } from 'commander';
import type { SourceFormat } from '../../ingest/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, escapeText, writeJson, writeLine } from '../output.js';

/** Files smaller than this finish before a progress bar would be worth drawing. */
const PROGRESS_MIN_BYTES = 5 * 1024 * 1024;

export function registerIngest(program: Command, ctx: Context): void {
  program
    .command('ingest')
    .description('read leads from a CSV or JSONL file (or - for standard input) into the store')
    .argument('<file>', 'a .csv, .jsonl or .ndjson file, or - for standard input')
    .addOption(
      new Option('--format <format>', 'the file format (default: from the extension, else sniffed)').choices([
        'csv',
        'jsonl',
      ]),
    )
    .option(
      '--rejects <file>',
      'where to write the rejected and duplicate rows (default: <data dir>/rejects/ingest-run-<id>.jsonl)',
    )
    .option('--force', 'overwrite the --rejects file if it exists (a symbolic link is always refused)')
    .option('--no-progress', 'no progress bar, even on a terminal')
    .option('--json', 'print the summary as JSON')
    .action(
      async (
        file: string,
        opts: { format?: SourceFormat; rejects?: string; force?: boolean; progress: boolean; json?: boolean },
      ) => {
        const { io } = ctx;
        const rejectsPath = opts.rejects === undefined ? undefined : resolve(io.cwd, opts.rejects);
        // Before anything is read: an output that would be refused is refused before the first chunk commits.
        if (rejectsPath !== undefined) checkRejectsPath(rejectsPath, opts.force === true);
        await ctx.withApp(async (app) => {
          let bar: SingleBar | null = null;
          const summary = await app.ingest({
            // Paths are relative to the CLI's working folder (not this process's: the CLI may run embedded).
            path: file === '-' ? file : resolve(io.cwd, file),
            ...(opts.format ? { format: opts.format } : {}),
            ...(rejectsPath !== undefined ? { rejectsPath, overwriteRejects: opts.force === true } : {}),
            stdin: io.stdin as NodeJS.ReadableStream as never,
            onProgress: ({ bytesRead, totalBytes, rowsRead }) => {
              if (
                !opts.progress ||
                !io.stderr.isTTY ||
                totalBytes === null ||
                totalBytes < PROGRESS_MIN_BYTES
              )
                return;
              if (!bar) {
                bar = new SingleBar({
                  stream: io.stderr as NodeJS.WritableStream as never,
                  format: 'ingest [{bar}] {percentage}% | {rows} rows',
                  hideCursor: true,
                });
                bar.start(totalBytes, 0, { rows: 0 });
              }
              bar.update(bytesRead, { rows: rowsRead });
            },
          });
          (bar as SingleBar | null)?.stop();
          if (opts.json) {
            writeJson(io.stdout, summary);
            return;
          }
          writeLine(
            io.stdout,
            `ingest run ${summary.runId} (${summary.source}, ${summary.format}): read ${summary.read}, accepted ${summary.accepted} ` +
              `(pending ${summary.states.pending}, below threshold ${summary.states.below_threshold}, expired ${summary.states.expired}), ` +
              `duplicate ${summary.duplicate}, rejected ${summary.rejected}`,
          );
          if (summary.rejectsFile)
            writeLine(io.stdout, `rejected and duplicate rows (line, field, reason): ${summary.rejectsFile}`);
          // Column names come from the file: quoted, every control character escaped.
          if (summary.ignoredColumns.length > 0)
            writeLine(
              io.stderr,
              `note: columns not used: ${summary.ignoredColumns.map((c) => `"${escapeText(c, { newlines: true })}"`).join(', ')}`,
            );
        });
      },
    );
}

/** `--rejects FILE`: never a symbolic link (its target would be overwritten), never an existing file unless --force. */
function checkRejectsPath(path: string, force: boolean): void {
  let found: ReturnType<typeof lstatSync>;
  try {
    found = lstatSync(path);
  } catch {
    return;
  }
  if (found.isSymbolicLink())
    throw new CliExit(
      EXIT.failure,
      `--rejects ${path} is a symbolic link: refused (a link is never followed)`,
    );
  if (!found.isFile()) throw new CliExit(EXIT.failure, `--rejects ${path} is not a regular file: refused`);
  if (!force) throw new CliExit(EXIT.failure, `--rejects ${path} exists: give --force to overwrite it`);
}
