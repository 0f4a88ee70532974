import { resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import type { Command } from 'commander';
import { describeBreak } from '../../audit/index.js';
import { createPrivateWriteStream } from '../../files/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeJson, writeLine } from '../output.js';

export function registerAudit(program: Command, ctx: Context): void {
  const audit = program.command('audit').description('verify or export the hash-chained audit log');

  audit
    .command('verify')
    .description('walk the chain and name the first broken entry; exit 1 if any')
    .option(
      '--expect-head <hash>',
      'also check the chain ends at this hash (recorded earlier, kept elsewhere)',
    )
    .option('--json', 'print as JSON')
    .action(async (opts: { expectHead?: string; json?: boolean }) => {
      const { io } = ctx;
      await ctx.withApp(async (app) => {
        const result = await app.audit.verify(opts.expectHead ? { expectHead: opts.expectHead } : {});
        if (opts.json) writeJson(io.stdout, result);
        else if (result.ok)
          writeLine(io.stdout, `audit chain intact: ${result.entries} entries, head ${result.headHash}`);
        if (result.ok) return;
        const problem = result.firstBreak
          ? describeBreak(result.firstBreak)
          : `the chain ends at ${result.headMismatch?.actual}, not at the expected ${result.headMismatch?.expected} (entries were cut off the end)`;
        throw new CliExit(
          EXIT.failure,
          `audit chain BROKEN after ${result.entries} good entries: ${problem}`,
        );
      });
    });

  audit
    .command('export')
    .description('write every entry as JSON lines (see docs/audit.md to verify it offline)')
    .option('--out <file>', 'write to a file (mode 0600) instead of standard output')
    .option('--force', 'replace the file if it exists (a symbolic link is always refused)')
    .action(async (opts: { out?: string; force?: boolean }) => {
      const { io } = ctx;
      await ctx.withApp(async (app) => {
        // Relative to the CLI's working folder (not this process's: the CLI may run embedded).
        const out = opts.out
          ? createPrivateWriteStream(resolve(io.cwd, opts.out), { overwrite: opts.force === true })
          : io.stdout;
        const { entries, headHash } = await app.audit.export(out);
        if (opts.out) {
          out.end();
          await finished(out);
          writeLine(io.stderr, `exported ${entries} entries to ${opts.out}; head ${headHash}`);
        }
      });
    });
}
