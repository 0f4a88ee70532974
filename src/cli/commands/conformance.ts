import { type Command, Option } from 'commander';
import { rehearseConformance, rehearsePartnerConformance } from '../../rehearsal/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';

/** `valhalla gates conformance`: added to the `gates` command group by whoever builds it. */
export function addConformanceCommand(gates: Command, ctx: Context): void {
  gates
    .command('conformance')
    .description(
      "the partner conformance suite against an in-process sandbox partner playing the installation's partner profile (a profile of the operator's own: the shipped one of its auth family in its stead), from private databases; recorded as gate 2 and 3 evidence",
    )
    .option('--json', 'print the result as JSON')
    .addOption(
      new Option(
        '--partner <which>',
        "sandbox: the full suite against the in-process sandbox playing the configured profile (faults included; a profile of the operator's own is played by the shipped one of its auth family); configured: the scenarios safe against the partner this installation is configured for (its own sandbox), which Phase 4 needs",
      )
        .choices(['sandbox', 'configured'])
        .default('sandbox'),
    )
    .action(async (opts: { json?: boolean; partner: 'sandbox' | 'configured' }) => {
      if (opts.partner === 'configured') return configuredPartner(ctx, opts.json === true);
      await ctx.withApp(async (app) => {
        const result = await rehearseConformance(app);
        if (opts.json) writeJson(ctx.io.stdout, result);
        else {
          const failed = result.scenarios.filter((s) => !s.passed).map((s) => s.name);
          writeLine(
            ctx.io.stdout,
            `conformance ${result.passed ? 'PASSED' : 'FAILED'} in ${(result.durationMs / 1000).toFixed(1)} s against the ${result.partner} partner` +
              (result.played.standIn
                ? ` playing ${result.played.profile} in the stead of the profile ${result.profile.name} (sha256 ${result.profile.sha256.slice(0, 12)}…), which it cannot play: the same auth family; the profile's own mapping is proven by \`valhalla gates conformance --partner configured\``
                : ` playing the profile ${result.profile.name} (sha256 ${result.profile.sha256.slice(0, 12)}…)`) +
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
