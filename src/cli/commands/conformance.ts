import { type Command, Option } from 'commander';
import {
  isConformanceProfileError,
  rehearseConformance,
  rehearsePartnerConformance,
} from '../../rehearsal/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';

/** `valhalla gates conformance`: added to the `gates` command group by whoever builds it. */
export function addConformanceCommand(gates: Command, ctx: Context): void {
  gates
    .command('conformance')
    .description(
      "the partner conformance suite against an in-process sandbox partner playing the installation's partner profile, from private databases; recorded as gate 2 and 3 evidence",
    )
    .option('--json', 'print the result as JSON')
    .addOption(
      new Option(
        '--partner <which>',
        'sandbox: the full suite against the in-process sandbox playing the configured profile (faults included; shipped profiles only); configured: the scenarios safe against the partner this installation is configured for (its own sandbox), which Phase 4 needs',
      )
        .choices(['sandbox', 'configured'])
        .default('sandbox'),
    )
    .action(async (opts: { json?: boolean; partner: 'sandbox' | 'configured' }) => {
      if (opts.partner === 'configured') return configuredPartner(ctx, opts.json === true);
      await ctx.withApp(async (app) => {
        let result: Awaited<ReturnType<typeof rehearseConformance>>;
        try {
          result = await rehearseConformance(app);
        } catch (error) {
          // A profile the sandbox cannot play: refused before anything ran, nothing recorded.
          if (isConformanceProfileError(error)) throw new CliExit(EXIT.usage, error.message);
          throw error;
        }
        if (opts.json) writeJson(ctx.io.stdout, result);
        else {
          const failed = result.scenarios.filter((s) => !s.passed).map((s) => s.name);
          writeLine(
            ctx.io.stdout,
            `conformance ${result.passed ? 'PASSED' : 'FAILED'} in ${(result.durationMs / 1000).toFixed(1)} s against the ${result.partner} partner` +
              ` playing the profile ${result.profile.name} (sha256 ${result.profile.sha256.slice(0, 12)}…)` +
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

/** `gates conformance --partner configured`: the manifest's partner, the safe scenarios, recorded. */
async function configuredPartner(ctx: Context, json: boolean): Promise<void> {
  await ctx.withApp(async (app) => {
    const result = await rehearsePartnerConformance(app);
    if (json) writeJson(ctx.io.stdout, result);
    else {
      writeLine(
        ctx.io.stdout,
        `conformance ${result.passed ? 'PASSED' : 'FAILED'} in ${(result.durationMs / 1000).toFixed(1)} s against the configured partner ${result.partner.url ?? '(none)'}`,
      );
      writeLine(
        ctx.io.stdout,
        formatTable(
          ['SCENARIO', 'OK', 'DETAIL'],
          result.scenarios.map((s) => [s.name, s.passed ? 'ok' : 'FAILED', s.detail]),
        ),
      );
      writeLine(
        ctx.io.stdout,
        'recorded in the audit chain as gates.partner_conformance (Phase 4 needs a passing run against the release manifest’s partner)',
      );
    }
    if (!result.passed)
      throw new CliExit(EXIT.failure, 'the conformance run against the configured partner failed');
  });
}
