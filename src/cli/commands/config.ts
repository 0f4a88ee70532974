import type { Command } from 'commander';
import { describeConfig } from '../../config/index.js';
import type { Context } from '../context.js';
import { type CliIo, formatTable, writeJson, writeLine } from '../output.js';

export function registerConfig(program: Command, ctx: Context): void {
  const config = program.command('config').description('show the configuration in force');
  config
    .command('show')
    .description('the settings in force, where each came from, and the policy hash (secrets masked)')
    .option('--json', 'print as JSON')
    .action((opts: { json?: boolean }) => {
      const described = describeConfig(ctx.config());
      const io: CliIo = ctx.io;
      if (opts.json) return writeJson(io.stdout, described);
      writeLine(io.stdout, `Phase ${described.phase} (${described.phase === 3 ? 'DRY-RUN' : 'LIVE'})`);
      writeLine(io.stdout, `Policy file: ${described.policyFile}`);
      writeLine(io.stdout, `Policy hash: ${described.policyHash}`);
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
