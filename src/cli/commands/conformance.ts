import type { Command } from 'commander';
import { recordConformance, runConformance } from '../../app/conformance.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';

/** `valhalla gates conformance`: added to the `gates` command group by whoever builds it. */
export function addConformanceCommand(gates: Command, ctx: Context): void {
  gates
    .command('conformance')
    .description(
      'the partner conformance suite against an in-process sandbox partner, from private databases; recorded as gate 2 and 3 evidence',
    )
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean }) => {
      await ctx.withApp(async (app) => {
        const result = await runConformance({ config: app.config });
        await recordConformance(app.audit, result, app.config.operator);
        if (opts.json) writeJson(ctx.io.stdout, result);
        else {
          const failed = result.scenarios.filter((s) => !s.passed).map((s) => s.name);
          writeLine(
            ctx.io.stdout,
            `conformance ${result.passed ? 'PASSED' : 'FAILED'} in ${(result.durationMs / 1000).toFixed(1)} s against the ${result.partner} partner` +
              `${failed.length > 0 ? `: failed ${failed.join(', ')}` : ''}`,
          );
          writeLine(
            ctx.io.stdout,
            formatTable(
              ['SCENARIO', 'CHECK', 'OK', 'DETAIL'],
              result.scenarios.flatMap((s) =>
                s.checks.map((c) => [s.name, c.name, c.ok ? 'ok' : 'FAILED', c.detail]),
              ),
            ),
          );
          writeLine(
            ctx.io.stdout,
            'recorded in the audit chain as gates.conformance (evidence for items 2.endpoint, 2.token_refresh, 2.failure_handling, 2.retries, 2.total_failure, 3.dedup_tested)',
          );
        }
        if (!result.passed) {
          throw new CliExit(EXIT.failure, 'the conformance suite failed: see the checks above');
        }
      });
    });
}
