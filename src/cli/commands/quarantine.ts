import { type Command, InvalidArgumentError } from 'commander';
import { OperatorError } from '../../engine/index.js';
import { wholeNumber } from '../arguments.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';

function leadIds(value: string, previous: number[] = []): number[] {
  if (!/^\d+(,\d+)*$/.test(value))
    throw new InvalidArgumentError(`not a lead id or comma-separated ids: ${value}`);
  return [...previous, ...value.split(',').map(Number)];
}

export function registerQuarantine(program: Command, ctx: Context): void {
  const quarantine = program
    .command('quarantine')
    .description('leads whose retries are spent or that the partner refused');

  quarantine
    .command('list')
    .description('quarantined leads (masked), newest first, with the reason')
    .option('--limit <n>', 'rows per page (1-1000)', wholeNumber(1, 1000), 50)
    .option('--before-id <id>', 'the page after this id', wholeNumber(1, Number.MAX_SAFE_INTEGER))
    .option('--json', 'print as JSON')
    .action(async (opts: { limit: number; beforeId?: number; json?: boolean }) => {
      await ctx.withApp(async (app) => {
        const rows = await app.operatorActions().quarantined(opts.limit, opts.beforeId);
        if (opts.json) return writeJson(ctx.io.stdout, { leads: rows });
        if (rows.length === 0) return writeLine(ctx.io.stdout, 'quarantine is empty');
        writeLine(
          ctx.io.stdout,
          formatTable(
            ['ID', 'NAME', 'EMAIL', 'SCORE', 'REASON'],
            rows.map((r) => [r.id, r.name, r.email, r.score, r.reason]),
          ),
        );
      });
    });

  for (const [name, description] of [
    [
      'release',
      'put quarantined leads back in the queue (pending; retries start again); a batch the partner may have is asked again under its own key, all its leads together',
    ],
    ['drop', 'take quarantined leads out for good (archived; never sent)'],
  ] as const) {
    quarantine
      .command(name)
      .description(description)
      .argument('<ids>', 'lead id, or comma-separated ids', leadIds)
      .requiredOption('--reason <text>', 'why (audited)')
      .action(async (ids: number[], opts: { reason: string }) => {
        await ctx.withApp(async (app) => {
          const actions = app.operatorActions();
          const result = await (name === 'release'
            ? actions.release(ids, opts.reason)
            : actions.drop(ids, opts.reason)
          ).catch((error: unknown) => {
            if (
              error instanceof OperatorError &&
              ['CONTACT_DATA_IN_REASON', 'WHOLE_BATCH', 'BATCH_CHANGED'].includes(error.code)
            ) {
              throw new CliExit(EXIT.refused, `refused: ${error.message}`);
            }
            throw error;
          });
          writeLine(
            ctx.io.stdout,
            `${name === 'release' ? 'released' : 'dropped'}: ${result.changed.join(', ') || 'none'}`,
          );
          if (result.skipped.length > 0) {
            throw new CliExit(
              EXIT.failure,
              `not quarantined, left as they are: ${result.skipped.join(', ')}`,
            );
          }
        });
      });
  }
}
