import type { Command } from 'commander';
import { OperatorError } from '../../engine/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeLine } from '../output.js';
import { wholeNumber } from './leads.js';

export function registerCycle(program: Command, ctx: Context): void {
  const cycle = program.command('cycle').description('operator actions on cycles');
  cycle
    .command('confirm')
    .description('ramp stage 1: confirm the latest live cycle (after checking it) so the next one may run')
    .option(
      '--cycle <id>',
      'confirm this cycle instead of the latest live one',
      wholeNumber(1, Number.MAX_SAFE_INTEGER),
    )
    .action(async (opts: { cycle?: number }) => {
      await ctx.withApp(async (app) => {
        try {
          const { confirmed } = await app.operatorActions().confirmCycle(opts.cycle);
          writeLine(ctx.io.stdout, `cycle ${confirmed} confirmed by ${app.config.operator}`);
        } catch (error) {
          if (error instanceof OperatorError) throw new CliExit(EXIT.failure, error.message);
          throw error;
        }
      });
    });
}
