import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import {
  type AppliedGrants,
  applyGrants,
  grantStatements,
  isGrantsError,
  migrateToLatest,
  openStore,
  type Store,
} from '../../store/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeJson, writeLine } from '../output.js';

/**
 * Database administration, run as the schema's OWNER role (docs/production.md): migrations, and the
 * grants of the APP role the runners connect as. These open the store without the app (no pseudonym
 * check, nothing audited) and never migrate implicitly.
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
      // A bad role name or SQLite is refused before anything is migrated.
      if (opts.appRole !== undefined) {
        const appRole = opts.appRole;
        guarded(() => grantStatements({ schema: 'public', appRole }));
        if (ctx.config().database.kind !== 'postgres') throw sqliteHasNoRoles();
      }
      await withStore(ctx, async (store) => {
        const applied = await migrateToLatest(store);
        const grants = opts.appRole ? await grantsOrExit(store, ctx, opts.appRole) : null;
        if (opts.json) return writeJson(io.stdout, { applied, grants });
        if (applied.length === 0) writeLine(io.stdout, 'nothing to apply: the schema is current');
        for (const name of applied) writeLine(io.stdout, `applied ${name}`);
        if (grants) {
          writeLine(io.stdout, `grants applied to "${grants.appRole}" on schema ${grants.schema}`);
        } else if (applied.length > 0 && ctx.config().database.kind === 'postgres') {
          // A table a migration added has no grants yet: the runners would be refused on it.
          writeLine(
            io.stderr,
            'now re-apply the runners role grants: valhalla db grants --app-role NAME --apply',
          );
        }
      });
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
      if (target.kind !== 'postgres') throw sqliteHasNoRoles();
      if (!opts.apply) {
        const schema = target.schema ?? 'public';
        const statements = guarded(() => grantStatements({ schema, appRole: opts.appRole }));
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
      await withStore(ctx, async (store) => {
        const applied = await grantsOrExit(store, ctx, opts.appRole);
        if (opts.json) return writeJson(io.stdout, applied);
        for (const statement of applied.statements) writeLine(io.stdout, `${statement};`);
        writeLine(
          io.stdout,
          `grants applied as "${applied.appliedBy}": "${applied.appRole}" may read and write schema ${applied.schema}'s tables; on audit_log only SELECT and INSERT`,
        );
      });
    });
}

async function withStore<T>(ctx: Context, work: (store: Store) => Promise<T>): Promise<T> {
  const target = ctx.config().database;
  // SQLite: no file, no installation; only `valhalla init` makes one (PostgreSQL: the owner may
  // migrate a schema before the first `init`, docs/production.md).
  if (target.kind === 'sqlite' && !existsSync(target.path)) {
    throw new CliExit(
      EXIT.failure,
      `no database at ${target.path}; nothing was created: point at the installation with --data-dir DIR or VALHALLA_DATA_DIR, or create one with \`valhalla init\``,
    );
  }
  const store = await openStore(target, { migrate: false });
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

async function grantsOrExit(store: Store, ctx: Context, appRole: string): Promise<AppliedGrants> {
  const target = ctx.config().database;
  const schema = target.kind === 'postgres' ? target.schema : undefined;
  try {
    return await applyGrants(store, { appRole, ...(schema ? { schema } : {}) });
  } catch (error) {
    throw asCliExit(error);
  }
}

function sqliteHasNoRoles(): CliExit {
  return new CliExit(
    EXIT.refused,
    'roles and grants are PostgreSQL features: the SQLite database is protected by its file permissions',
  );
}

function guarded<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    throw asCliExit(error);
  }
}

function asCliExit(error: unknown): unknown {
  if (!isGrantsError(error)) return error;
  return new CliExit(error.code === 'INVALID_NAME' ? EXIT.usage : EXIT.refused, error.message);
}
