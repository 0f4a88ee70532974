import type { Command } from 'commander';
import { applyDatabaseGrants, grantsScript, migrateDatabase } from '../../app/index.js';
import type { Context } from '../context.js';
import { writeJson, writeLine } from '../output.js';

/**
 * Database administration, run as the schema's OWNER role (docs/production.md): migrations, and the
 * grants of the APP role the runners connect as (src/app/database-admin.ts: without the app, nothing
 * audited, never an implicit migration).
 */
export function registerDb(program: Command, ctx: Context): void {
  const db = program
    .command('db')
    .description('database administration as the schema owner: migrations, the runners role grants');

  db.command('migrate')
    .description('apply pending migrations (as the schema owner; stop every runner first) and print them')
    .option('--app-role <name>', 're-apply the grants of the runners role afterwards (PostgreSQL)')
    .option('--json', 'print as JSON')
    .action(async (opts: { appRole?: string; json?: boolean }) => {
      const { io } = ctx;
      const target = ctx.config().database;
      const { applied, grants } = await migrateDatabase(
        target,
        opts.appRole === undefined ? {} : { appRole: opts.appRole },
      );
      if (opts.json) return writeJson(io.stdout, { applied, grants });
      if (applied.length === 0) writeLine(io.stdout, 'nothing to apply: the schema is current');
      for (const name of applied) writeLine(io.stdout, `applied ${name}`);
      if (grants) {
        writeLine(io.stdout, `grants applied to "${grants.appRole}" on schema ${grants.schema}`);
      } else if (applied.length > 0 && target.kind === 'postgres') {
        // A table a migration added has no grants yet: the runners would be refused on it.
        writeLine(
          io.stderr,
          'now re-apply the runners role grants: valhalla db grants --app-role NAME --apply',
        );
      }
    });

  db.command('grants')
    .description(
      'print (or --apply) the SQL that lets the runners role read and write the tables, and only read and append the audit chain',
    )
    .requiredOption('--app-role <name>', 'the role the runners connect as')
    .option(
      '--apply',
      'run it now as the connecting role (the schema owner), in one transaction, and check the result',
    )
    .option('--json', 'print as JSON')
    .action(async (opts: { appRole: string; apply?: boolean; json?: boolean }) => {
      const { io } = ctx;
      const target = ctx.config().database;
      if (!opts.apply) {
        const { schema, statements } = grantsScript(target, opts.appRole);
        if (opts.json) return writeJson(io.stdout, { schema, appRole: opts.appRole, statements });
        writeLine(
          io.stdout,
          `-- valhalla: grants for the runners role "${opts.appRole}" on schema ${schema};`,
        );
        writeLine(
          io.stdout,
          '-- run as the schema owner after every migration (or: valhalla db grants --apply)',
        );
        writeLine(io.stdout, 'begin;');
        for (const statement of statements) writeLine(io.stdout, `${statement};`);
        writeLine(io.stdout, 'commit;');
        return;
      }
      const applied = await applyDatabaseGrants(target, opts.appRole);
      if (opts.json) return writeJson(io.stdout, applied);
      for (const statement of applied.statements) writeLine(io.stdout, `${statement};`);
      writeLine(
        io.stdout,
        `grants applied as "${applied.appliedBy}": "${applied.appRole}" may read and write schema ${applied.schema}'s tables; on audit_log only SELECT and INSERT`,
      );
    });
}
