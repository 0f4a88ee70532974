import type { Command } from 'commander';
import { checkStability } from '../../rehearsal/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';

export function registerStability(program: Command, ctx: Context): void {
  const stability = program
    .command('stability')
    .description("gate 9: the policy's 72-hour Phase 3 stability test");
  stability
    .command('verify')
    .description(
      "check the last --hours of Phase 3 (this installation's own heartbeats and entries, score drift, memory, processes, guard) and print the verdict; --record writes it to the audit chain as gate 9 evidence",
    )
    .option(
      '--hours <n>',
      'the window, in hours, ending now (default: the policy’s stabilityHours, 72 h in the shipped policy; never fewer)',
    )
    .option('--record', 'record the result in the audit chain as gate 9 evidence (stability.verified)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { hours?: string; json?: boolean; record?: boolean }) => {
      const required = ctx.config().policy.stabilityHours;
      const text = (opts.hours ?? String(required)).trim();
      if (!/^\d+$/.test(text)) {
        throw new CliExit(EXIT.usage, `--hours must be a whole number of hours, not ${JSON.stringify(text)}`);
      }
      const hours = Number(text);
      if (hours < required) {
        throw new CliExit(
          EXIT.usage,
          `--hours ${hours} refused: the policy requires ${required} hours of Phase 3 stability`,
        );
      }
      await ctx.withApp(async (app) => {
        // Trying it records nothing: only an explicit --record writes gate 9 evidence.
        const result = await checkStability(app, { hours, record: opts.record === true });
        if (opts.json) writeJson(ctx.io.stdout, { ...result, recorded: opts.record === true });
        else {
          writeLine(
            ctx.io.stdout,
            `Phase 3 stability over ${hours} h (${result.from} → ${result.until}): ${result.passed ? 'PASSED' : 'FAILED'}`,
          );
          writeLine(
            ctx.io.stdout,
            formatTable(
              ['check', 'result', 'figure', 'detail'],
              result.checks.map((c) => [
                c.name,
                c.passed ? 'ok' : 'FAILED',
                c.figure,
                c.at === undefined ? c.detail : `at ${c.at}: ${c.detail}`,
              ]),
            ),
          );
          writeLine(
            ctx.io.stdout,
            opts.record
              ? 'recorded in the audit chain as stability.verified (gate 9 evidence)'
              : 'not recorded (a trial): add --record to record it as gate 9 evidence',
          );
        }
        if (!result.passed) {
          const failed = result.checks.filter((c) => !c.passed).map((c) => c.name);
          throw new CliExit(EXIT.refused, `Phase 3 stability not proven: failed ${failed.join(', ')}`);
        }
      });
    });
}
