import type { Command } from 'commander';
import { findInstallation } from '../../app/index.js';
import { describeConfig } from '../../config/index.js';
import { manifestHash } from '../../gates/index.js';
import { isLoopbackHost } from '../../policy/index.js';
import type { Context } from '../context.js';
import { type CliIo, formatTable, writeJson, writeLine } from '../output.js';

export function registerConfig(program: Command, ctx: Context): void {
  const config = program.command('config').description('show the configuration in force');
  config
    .command('show')
    .description('the settings in force, where each came from, and the policy hash (secrets masked)')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const described = describeConfig(ctx.config());
      const io: CliIo = ctx.io;
      // The release manifest names the installation, whose id is in the database: read where the
      // database is on this machine (a file, or PostgreSQL on a loopback address), nothing created.
      const config = ctx.config();
      const local =
        config.database.kind === 'sqlite' || isLoopbackHost(new URL(config.database.url).hostname);
      const found = local && (await findInstallation(config).catch(() => ({ found: false }))).found;
      const document = found ? await ctx.withApp((app) => app.releaseManifest()) : null;
      const releaseManifest = document === null ? null : { hash: manifestHash(document), document };
      if (opts.json) return writeJson(io.stdout, { ...described, releaseManifest });
      writeLine(io.stdout, `Phase ${described.phase} (${described.phase === 3 ? 'DRY-RUN' : 'LIVE'})`);
      writeLine(io.stdout, `Policy file: ${described.policyFile}`);
      writeLine(io.stdout, `Policy hash: ${described.policyHash}`);
      writeLine(
        io.stdout,
        releaseManifest === null
          ? `Release manifest: not shown (${local ? 'no installation here: the manifest names one' : 'the database is on another host'}; valhalla gates manifest reads it)`
          : `Release manifest: ${releaseManifest.hash} (installation ${releaseManifest.document.installationId}), what every signed document approves:`,
      );
      if (releaseManifest !== null) writeLine(io.stdout, JSON.stringify(releaseManifest.document, null, 2));
      writeLine(io.stdout);
      writeLine(
        io.stdout,
        formatTable(
          ['VARIABLE', 'VALUE', 'SOURCE'],
          described.variables.map((v) => [v.name, v.value, v.source]),
        ),
      );
      writeLine(io.stdout);
      writeLine(
        io.stdout,
        formatTable(
          ['POLICY', 'VALUE'],
          Object.entries(described.policy).map(([k, v]) => [
            k,
            typeof v === 'object' ? JSON.stringify(v) : String(v),
          ]),
        ),
      );
    });
}
