import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { PRIVATE_DIR_MODE, writePrivateFile } from '../../files/index.js';
import { describeLimits, type ManifestStatus } from '../../gates/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';
import { addConformanceCommand } from './conformance.js';

export function registerGates(program: Command, ctx: Context): void {
  const gates = program
    .command('gates')
    .description('the nine go-live gates: status, verification (verify_phase4_gates), evidence report');

  gates
    .command('status')
    .description('every gate item by item: state, evidence or signer, date')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      await ctx.withApp(async (app) => {
        const report = await app.gatesReport();
        if (opts.json) return writeJson(ctx.io.stdout, report);
        writeLine(ctx.io.stdout, `Policy hash ${report.policyHash}`);
        writeManifest(ctx, report.manifest);
        writeLine(
          ctx.io.stdout,
          formatTable(
            ['GATE', 'ITEM', 'STATE', 'EVIDENCE OR SIGNER', 'DATE'],
            report.gates.flatMap((g) => g.items.map((i) => [g.gate, i.id, i.state, i.detail, i.date])),
          ),
        );
        writeLine(ctx.io.stdout, `Activation: ${report.activation.state}: ${report.activation.detail}`);
        writeLine(
          ctx.io.stdout,
          report.cleared
            ? 'CLEARED: every gate green, activated by the CEO'
            : `NOT CLEARED: ${report.missing.length} item(s) missing (valhalla gates verify lists them)`,
        );
      });
    });

  gates
    .command('manifest')
    .description(
      'the release manifest Phase 4 would run with here (what every signed document approves), its hash and what keeps it from running',
    )
    .option('--json', 'print as JSON')
    .option(
      '--out <file>',
      'write the manifest (JSON, mode 0600) for a signer on another machine (--manifest)',
    )
    .action(async (opts: { json?: boolean; out?: string }) => {
      await ctx.withApp(async (app) => {
        const { manifest } = await app.gatesReport();
        if (manifest.document === null) {
          throw new CliExit(EXIT.refused, manifest.problems.join('; '));
        }
        if (opts.out !== undefined) {
          writePrivateFile(resolve(ctx.io.cwd, opts.out), `${JSON.stringify(manifest.document, null, 2)}\n`);
          writeLine(ctx.io.stdout, `wrote release manifest ${manifest.hash} to ${opts.out}`);
          return;
        }
        if (opts.json) return writeJson(ctx.io.stdout, manifest);
        writeManifest(ctx, manifest);
        writeLine(ctx.io.stdout, JSON.stringify(manifest.document, null, 2));
      });
    });

  gates
    .command('verify')
    .description(
      "the policy's verify_phase4_gates: exit 0 only when every gate is green and the CEO has activated",
    )
    .action(async () => {
      await ctx.withApp(async (app) => {
        const report = await app.verifyGates();
        if (report.cleared) {
          writeLine(
            ctx.io.stdout,
            `all nine gates green and signed against policy ${report.policyHash}; activated by the CEO`,
          );
          return;
        }
        for (const line of report.missing) writeLine(ctx.io.stdout, `missing: ${line}`);
        throw new CliExit(
          EXIT.refused,
          `the gates are not all green: ${report.missing.length} item(s) missing`,
        );
      });
    });

  gates
    .command('report')
    .description(
      'write gates-report.md and gates-report.json (with the signed documents, keys and evidence) for an auditor',
    )
    .requiredOption('--out <dir>', 'the folder to write into (the files are mode 0600)')
    .option('--force', 'replace the two files if they exist (a symbolic link is always refused)')
    .action(async (opts: { out: string; force?: boolean }) => {
      await ctx.withApp(async (app) => {
        const { bundle, markdown } = await app.gatesBundle();
        const dir = resolve(ctx.io.cwd, opts.out);
        mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
        const overwrite = opts.force === true;
        writePrivateFile(join(dir, 'gates-report.json'), `${JSON.stringify(bundle, null, 2)}\n`, {
          overwrite,
        });
        writePrivateFile(join(dir, 'gates-report.md'), markdown, { overwrite });
        writeLine(
          ctx.io.stdout,
          `wrote ${join(dir, 'gates-report.md')} and gates-report.json (${bundle.report.cleared ? 'CLEARED' : `NOT CLEARED: ${bundle.report.missing.length} missing`}); verify offline: node scripts/verify-gates-report.mjs ${join(dir, 'gates-report.json')}`,
        );
      });
    });

  addConformanceCommand(gates, ctx);
}

/** The manifest's hash, the approved limits and each problem, for `gates status` and `gates manifest`. */
function writeManifest(ctx: Context, manifest: ManifestStatus): void {
  if (manifest.document === null) {
    writeLine(ctx.io.stdout, `Release manifest: none (${manifest.problems.join('; ')})`);
    return;
  }
  writeLine(
    ctx.io.stdout,
    `Release manifest ${manifest.hash} (installation ${manifest.document.installationId}); limits ${describeLimits(manifest.document.limits)}`,
  );
  if (manifest.approvedLimits !== null) {
    writeLine(
      ctx.io.stdout,
      `Approved by ${manifest.approvedBy}: up to ${describeLimits(manifest.approvedLimits)}`,
    );
  }
  for (const problem of manifest.problems) writeLine(ctx.io.stdout, `  refused: ${problem}`);
}
