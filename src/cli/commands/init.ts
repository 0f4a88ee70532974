import type { Command } from 'commander';
import { initialize } from '../../app/index.js';
import type { Context } from '../context.js';
import { writeJson, writeLine } from '../output.js';

export function registerInit(program: Command, ctx: Context): void {
  program
    .command('init')
    .description(
      'create the data folder, the pseudonym secret (mode 0600) and the database; safe to run again',
    )
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const config = ctx.config();
      const { createdSecret, app } = await initialize(config);
      try {
        const result = {
          dataDir: config.dataDir,
          database: config.database.kind === 'sqlite' ? config.database.path : 'postgres',
          pseudonymSecret:
            config.raw.VALHALLA_PSEUDONYM_SECRET !== undefined
              ? 'from VALHALLA_PSEUDONYM_SECRET'
              : config.pseudonymSecretFile,
          createdSecret,
          policyHash: config.policyHash,
          // Recorded in the database: every later command must run with it (exit 3 otherwise).
          dedupRule: config.dedupKey,
        };
        if (opts.json) return writeJson(ctx.io.stdout, result);
        writeLine(ctx.io.stdout, `Initialised Valhalla in ${result.dataDir}`);
        writeLine(ctx.io.stdout, `  database:         ${result.database}`);
        writeLine(
          ctx.io.stdout,
          `  pseudonym secret: ${result.pseudonymSecret}${createdSecret ? ' (created; back it up: dedup keys depend on it)' : ''}`,
        );
        writeLine(ctx.io.stdout, `  policy hash:      ${result.policyHash}`);
        writeLine(
          ctx.io.stdout,
          `  dedup rule:       ${result.dedupRule} (recorded: every command on this installation must run with it)`,
        );
      } finally {
        await app.close();
      }
    });
}
