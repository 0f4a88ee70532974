import { resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { writePrivateFile } from '../../files/index.js';
import {
  FAULT_PROFILE_NAMES,
  type FaultProfile,
  formatSimulation,
  isSimulationRefused,
  simulate,
  simulationHtml,
} from '../../rehearsal/index.js';
import { wholeNumber } from '../arguments.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeJson, writeLine } from '../output.js';

export function registerSimulate(program: Command, ctx: Context): void {
  program
    .command('simulate')
    .description(
      "rehearse go-live: the real engine under a virtual clock against an in-process sandbox partner playing the installation's partner profile, from private databases; days of policy time in seconds",
    )
    .option('--hours <n>', 'hours of policy time from go-live (1-168)', wholeNumber(1, 168), 72)
    .option(
      '--leads-per-hour <n>',
      'synthetic leads arriving each hour (1-20000)',
      wholeNumber(1, 20_000),
      300,
    )
    .addOption(
      new Option('--faults <profile>', 'how the partner behaves')
        .choices(FAULT_PROFILE_NAMES)
        .default('healthy'),
    )
    .option(
      '--seed <n>',
      'seeds the leads and the partner faults (the same seed, the same run)',
      wholeNumber(0, 2 ** 31),
      1,
    )
    .option('--start <time>', 'the simulated go-live, an ISO 8601 time (default: now)', (value) => {
      const at = Date.parse(value);
      if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(at)) {
        throw new InvalidArgumentError(`not an ISO 8601 time (e.g. 2026-12-01T09:00:00Z): ${value}`);
      }
      return at;
    })
    .option('--json', 'print the whole result as JSON (every cycle)')
    .option('--html <file>', 'also write an HTML report with charts (self-contained, mode 0600)')
    .option('--force', 'replace the --html file if it exists (a symbolic link is always refused)')
    .action(
      async (opts: {
        hours: number;
        leadsPerHour: number;
        faults: FaultProfile;
        seed: number;
        start?: number;
        json?: boolean;
        html?: string;
        force?: boolean;
      }) => {
        let result: Awaited<ReturnType<typeof simulate>>;
        try {
          result = await simulate({
            config: ctx.config(),
            hours: opts.hours,
            leadsPerHour: opts.leadsPerHour,
            faults: opts.faults,
            seed: opts.seed,
            ...(opts.start === undefined ? {} : { start: opts.start }),
          });
        } catch (error) {
          // Refused before anything ran: a profile the sandbox cannot play, faults it cannot mean.
          if (isSimulationRefused(error)) throw new CliExit(EXIT.usage, error.message);
          throw error;
        }
        if (opts.html) {
          const file = resolve(ctx.io.cwd, opts.html);
          try {
            writePrivateFile(file, simulationHtml(result), { overwrite: opts.force === true });
          } catch (error) {
            throw new CliExit(EXIT.failure, (error as Error).message);
          }
        }
        if (opts.json) writeJson(ctx.io.stdout, result);
        else for (const line of formatSimulation(result)) writeLine(ctx.io.stdout, line);
        if (opts.html && !opts.json) writeLine(ctx.io.stdout, `report: ${resolve(ctx.io.cwd, opts.html)}`);
        // A rollback is the policy working; something lost, sent twice or over a cap is not.
        const capsHeld =
          result.days.every((d) => d.dailyCapHeld) &&
          result.ramp.every((s) => s.maxClaimed <= s.ceiling) &&
          result.cycles.every((c) => c.actions <= result.limits.actionsPerCycle);
        if (!result.reconciliation.ok || !capsHeld) {
          throw new CliExit(
            EXIT.failure,
            'the simulation found a problem: see the reconciliation and caps above',
          );
        }
      },
    );
}
