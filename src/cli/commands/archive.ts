import type { Writable } from 'node:stream';
import { type Command, InvalidArgumentError } from 'commander';
import { type ArchiveReport, archiveCompleted, retentionCutoff } from '../../privacy/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeJson, writeLine } from '../output.js';

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/i;

/** `2026-01-01` (midnight UTC) or an ISO 8601 date-time with a zone: a cutoff never depends on the machine's zone. */
export function parseCutoff(value: string): number {
  const text = value.trim();
  if (DATE.test(text)) {
    const ms = Date.parse(`${text}T00:00:00Z`);
    // Date.parse rolls 2026-02-30 over into March: refuse a day its month does not have.
    if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== text)
      throw new InvalidArgumentError(`not a real date: ${value}`);
    return ms;
  }
  if (DATE_TIME.test(text)) {
    const ms = Date.parse(text);
    if (!Number.isNaN(ms)) return ms;
  }
  throw new InvalidArgumentError(
    `not a date (YYYY-MM-DD, midnight UTC) or an ISO 8601 date-time with a zone: ${value}`,
  );
}

export function registerArchive(program: Command, ctx: Context): void {
  program
    .command('archive')
    .description(
      'archive completed leads (exported, expired, below threshold, dropped) whose last change is before a date: ' +
        'state archived, personal data erased, the row kept; pending, in-flight and quarantined leads are never touched. ' +
        'Committed in chunks, each audited; safe to stop and run again',
    )
    .option(
      '--before <date>',
      'the cutoff: YYYY-MM-DD (midnight UTC) or an ISO 8601 date-time with a zone',
      parseCutoff,
    )
    .option('--retention', 'the cutoff is now minus VALHALLA_RETENTION_DAYS (for a daily timer)')
    .option('--dry-run', 'count what would be archived; change nothing')
    .option('--json', 'print as JSON')
    .action(async (opts: { before?: number; retention?: boolean; dryRun?: boolean; json?: boolean }) => {
      const { io } = ctx;
      if ((opts.before === undefined) === (opts.retention !== true)) {
        throw new CliExit(EXIT.usage, 'give exactly one of --before DATE or --retention');
      }
      await ctx.withApp(async (app) => {
        let before = opts.before;
        let retentionDays: number | null = null;
        if (opts.retention) {
          const window = retentionCutoff(app);
          if (window === null) {
            throw new CliExit(
              EXIT.refused,
              'VALHALLA_RETENTION_DAYS is not set: there is no retention window to apply (set it, or give --before DATE)',
            );
          }
          before = window.before;
          retentionDays = window.retentionDays;
        }
        const progress = io.stderr.isTTY && !opts.json;
        const result = await archiveCompleted(app, {
          before: before!,
          retentionDays,
          dryRun: opts.dryRun === true,
          ...(progress ? { onChunk: (n: number) => io.stderr.write(`\rarchived ${n} leads…`) } : {}),
        });
        if (progress && result.kind === 'done' && result.chunks > 0) io.stderr.write('\n');
        if (result.kind === 'refused') throw new CliExit(EXIT.usage, result.message);
        const { kind: _kind, ...report } = result;
        if (opts.json) return writeJson(io.stdout, report);
        printReport(io.stdout, report);
        if (report.storageNote) writeLine(io.stderr, `note: ${report.storageNote}`);
      });
    });
}

function printReport(out: Writable, report: ArchiveReport): void {
  const a = report.archived;
  const window = report.retentionDays === null ? '' : ` (retention ${report.retentionDays} days)`;
  const byState = `exported ${a.exported}, expired ${a.expired}, below threshold ${a.below_threshold}, dropped ${a.archived}`;
  writeLine(
    out,
    report.dryRun
      ? `dry run: would archive ${a.total} leads last changed before ${report.cutoff}${window}: ${byState}; nothing changed`
      : `archived ${a.total} leads last changed before ${report.cutoff}${window} in ${report.chunks} chunk(s): ${byState}`,
  );
  const left = report.leftAsTheyAre;
  if (left.total > 0) {
    writeLine(
      out,
      `left as they are, not complete: pending ${left.pending}, in flight ${left.in_flight}, quarantined ${left.quarantined} ` +
        '(the runner sends or expires pending leads and finishes batches in flight; release or drop quarantined ones)',
    );
  }
}
