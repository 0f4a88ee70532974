/**
 * Role separation on PostgreSQL (docs/production.md): an OWNER role owns the schema and migrates it,
 * the APP role the runners use reads and writes the tables but can only read and append the audit
 * chain. Everything runs through the product's own code and CLI; roles and schemas carry a random
 * suffix (roles are cluster-global) and are dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, openApp } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { AuditAction } from '../../src/policy/index.js';
import {
  applyGrants,
  grantStatements,
  migrateToLatest,
  openStore,
  type Store,
} from '../../src/store/index.js';
import { migrations } from '../../src/store/migrations/index.js';
import { PG_URL, postgresAvailable, withPgAdmin } from '../support/backends.js';
import { REPO_ROOT, runInProcess, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { HOUR } from '../support/world.js';

const available = await postgresAvailable();

const suffix = randomBytes(5).toString('hex');
const OWNER = `vt_owner_${suffix}`;
const APP = `vt_app_${suffix}`;
/** A role that belongs to the owner: the grants must refuse to call it a runners role. */
const OWNER_MEMBER = `vt_member_${suffix}`;
const ROLES = [APP, OWNER_MEMBER, OWNER];
const MIGRATION_NAMES = Object.keys(migrations('postgres')).sort();
const LATEST_MIGRATION = MIGRATION_NAMES.at(-1)!;

const schemas: string[] = [];
const opened: { close(): Promise<void> }[] = [];

const asSuperuser = withPgAdmin;

/** A new, empty schema owned by the owner role (what a DBA creates before the first migration). */
async function ownedSchema(): Promise<string> {
  const schema = `vt_roles_${randomBytes(5).toString('hex')}`;
  schemas.push(schema);
  await asSuperuser((c) => c.query(`create schema ${schema} authorization ${OWNER}`));
  return schema;
}

/** VALHALLA_DATABASE_URL for `role` (trust authentication here: no password) on `schema`. */
function databaseUrl(role: string, schema: string): string {
  const url = new URL(PG_URL);
  url.username = role;
  url.password = '';
  url.searchParams.set('schema', schema);
  return url.toString();
}

function envAs(role: string, schema: string, dir = tempDir()): Record<string, string> {
  return testEnv(dir, { VALHALLA_DATABASE_URL: databaseUrl(role, schema) });
}

function cliAs(role: string, schema: string, args: string[]) {
  const dir = tempDir();
  return runInProcess(args, { env: envAs(role, schema, dir), cwd: dir });
}

/** The product as a runner sees it: openApp with the role's URL (which migrates if it may). */
async function openAppAs(role: string, schema: string): Promise<App> {
  const dir = tempDir();
  const app = await openApp({ config: loadConfig({ cwd: dir, env: envAs(role, schema, dir) }) });
  opened.push(app);
  return app;
}

async function openStoreAs(
  role: string,
  schema: string,
  options: { migrate?: boolean } = {},
): Promise<Store> {
  const store = await openStore({ kind: 'postgres', url: databaseUrl(role, schema), schema }, options);
  opened.push(store);
  return store;
}

/** A schema the owner migrated and granted to the app role, with the product's own functions. */
async function preparedSchema(): Promise<string> {
  const schema = await ownedSchema();
  const owner = await openStoreAs(OWNER, schema, { migrate: false });
  await migrateToLatest(owner);
  await applyGrants(owner, { schema, appRole: APP });
  await owner.close();
  return schema;
}

let fileCount = 0;
/** A JSONL lead file of `count` fresh, valid leads (and one invalid row) for `tag`. */
function leadFile(tag: string, count: number): string {
  const dir = tempDir();
  const now = Date.now();
  const lines = Array.from({ length: count }, (_, i) =>
    JSON.stringify({
      name: `Person ${tag} ${i}`,
      email: `${tag}.${i}.${++fileCount}@leads.example.test`,
      phone: `+44 20 7946 ${String(1000 + i)}`,
      company: 'Example Ltd',
      score: 90 - i,
      source_timestamp: new Date(now - HOUR).toISOString(),
      value: 100,
    }),
  );
  lines.push(JSON.stringify({ name: 'No Email', score: 80, source_timestamp: new Date(now).toISOString() }));
  const file = join(dir, `${tag}.jsonl`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/** Run `statement` on the store's connection and return the error PostgreSQL answered with. */
async function refusal(store: Store, statement: string): Promise<{ code?: string; message: string }> {
  return sql
    .raw(statement)
    .execute(store.db)
    .then(
      () => {
        throw new Error(`expected PostgreSQL to refuse: ${statement}`);
      },
      (error: { code?: string; message: string }) => error,
    );
}

describe('docs/production.md', () => {
  it('shows the grants exactly as `valhalla db grants` prints them', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs', 'production.md'), 'utf8');
    const printed = grantStatements({ schema: 'valhalla', appRole: 'valhalla_app' })
      .map((statement) => `${statement};`)
      .join('\n');
    expect(doc).toContain(`begin;\n${printed}\ncommit;\n`);
  });
});

describe.skipIf(!available)('PostgreSQL owner and app roles', () => {
  beforeAll(async () => {
    await asSuperuser(async (c) => {
      await c.query(`create role ${OWNER} login`);
      await c.query(`create role ${APP} login`);
      await c.query(`create role ${OWNER_MEMBER} login in role ${OWNER}`);
    });
  });

  afterAll(async () => {
    for (const handle of opened.splice(0)) await handle.close();
    await asSuperuser(async (c) => {
      for (const schema of schemas.splice(0)) await c.query(`drop schema if exists ${schema} cascade`);
      // Privileges and anything else the roles still hold in this database, then the roles themselves.
      for (const role of ROLES) await c.query(`drop owned by ${role}`);
      for (const role of ROLES) await c.query(`drop role if exists ${role}`);
    });
  });

  it('the owner migrates and grants with the CLI; the app role runs the product but cannot change the audit chain', async () => {
    const schema = await ownedSchema();

    const migrated = await cliAs(OWNER, schema, ['db', 'migrate']);
    expect(migrated.stderr).toContain('valhalla db grants --app-role NAME --apply');
    expect(migrated).toMatchObject({ code: 0 });
    expect(migrated.stdout).toContain(`applied ${MIGRATION_NAMES[0]}`);
    expect(migrated.stdout).toContain(`applied ${LATEST_MIGRATION}`);
    const again = await cliAs(OWNER, schema, ['db', 'migrate']);
    expect(again).toMatchObject({ code: 0 });
    expect(again.stdout).toContain('nothing to apply');

    const printed = await cliAs(OWNER, schema, ['db', 'grants', '--app-role', APP]);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toContain(`grant select, insert on "${schema}"."audit_log" to "${APP}";`);
    const applied = await cliAs(OWNER, schema, ['db', 'grants', '--app-role', APP, '--apply']);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    expect(applied.stdout).toContain(`grants applied as "${OWNER}"`);

    // What the systemd unit runs as the runner before `valhalla run`, and an operator's first look.
    for (const command of [['init'], ['status']]) {
      const result = await cliAs(APP, schema, command);
      expect(result.stderr, command.join(' ')).toBe('');
      expect(result.code, command.join(' ')).toBe(0);
    }

    const app = await openAppAs(APP, schema);
    const ingested = await app.ingest({ path: leadFile('roles', 3) });
    expect(ingested).toMatchObject({ accepted: 3, rejected: 1 });
    await app.audit.record([
      { actor: 'pg-roles-test', action: 'test.first' as AuditAction, details: { n: 1 } },
      { actor: 'pg-roles-test', action: 'test.second' as AuditAction, details: { n: 2 } },
    ]);
    // A Phase 3 cycle: dry-run records, cycles, the runtime state, all written by the app role.
    await app.engine().runCycle();
    const status = await app.status();
    expect(status.leads.pending).toBe(3);
    const before = await app.audit.verify();
    expect(before.ok).toBe(true);
    expect(before.entries).toBe(status.auditEntries);
    expect(before.entries).toBeGreaterThanOrEqual(3);

    // Refused by the privileges (42501, "permission denied for table"), not only by the triggers
    // (which raise the same SQLSTATE with their own message, for the owner).
    for (const statement of [
      `update audit_log set actor = 'mallory' where seq = 1`,
      'delete from audit_log where seq = 1',
      'truncate audit_log',
    ]) {
      const error = await refusal(app.store, statement);
      expect(error.code, statement).toBe('42501');
      expect(error.message, statement).toMatch(/^permission denied for table audit_log/);
    }
    // Not the owner: the append-only triggers stay, the table stays.
    for (const statement of [
      'drop trigger audit_log_no_update_delete on audit_log',
      'drop trigger audit_log_no_truncate on audit_log',
      'alter table audit_log disable trigger user',
      'drop table audit_log',
    ]) {
      const error = await refusal(app.store, statement);
      expect(error.code, statement).toBe('42501');
      expect(error.message, statement).toMatch(/^must be owner of (table|relation) audit_log/);
    }
    // No DDL at run time either.
    const created = await refusal(app.store, 'create table mallory (x int)');
    expect(created).toMatchObject({ code: '42501' });

    const after = await app.audit.verify({ expectHead: before.headHash });
    expect(after).toMatchObject({ ok: true, entries: before.entries, headHash: before.headHash });
    // The CLI's verify, as the app role, agrees.
    const verified = await cliAs(APP, schema, ['audit', 'verify']);
    expect(verified.stdout).toContain(
      `audit chain intact: ${before.entries} entries, head ${before.headHash}`,
    );
    expect(verified.code).toBe(0);
  });

  it('the grants give exactly the run-time privileges, on every table of the schema', async () => {
    const schema = await preparedSchema();
    const rows = await asSuperuser(
      async (c) =>
        (
          await c.query<{ table: string; privileges: string[] }>(
            `select c.relname as table,
               array_remove(array[
                 case when has_table_privilege($1, c.oid, 'SELECT') then 'select' end,
                 case when has_table_privilege($1, c.oid, 'INSERT') then 'insert' end,
                 case when has_table_privilege($1, c.oid, 'UPDATE') then 'update' end,
                 case when has_table_privilege($1, c.oid, 'DELETE') then 'delete' end,
                 case when has_table_privilege($1, c.oid, 'TRUNCATE') then 'truncate' end,
                 case when has_table_privilege($1, c.oid, 'TRIGGER') then 'trigger' end,
                 case when has_table_privilege($1, c.oid, 'REFERENCES') then 'references' end
               ], null) as privileges
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $2 and c.relkind = 'r' order by 1`,
            [APP, schema],
          )
        ).rows,
    );
    const byTable = Object.fromEntries(rows.map((r) => [r.table, r.privileges.join(',')]));
    expect(byTable.audit_log).toBe('select,insert');
    expect(byTable.signatures).toBe('select,insert');
    expect(byTable.signers).toBe('select,insert,update');
    expect(byTable.valhalla_migration).toBe('select');
    for (const table of ['leads', 'deliveries', 'delivery_leads', 'runtime_state', 'heartbeats', 'alerts']) {
      expect(byTable[table], table).toBe('select,insert,update,delete');
    }
    // Every table has some grant: a table added by a migration is covered by re-running the grants.
    expect(rows.filter((r) => r.privileges.length === 0)).toEqual([]);
    const schemaCreate = await asSuperuser(
      async (c) =>
        (await c.query(`select has_schema_privilege($1, $2, 'CREATE') as can`, [APP, schema])).rows[0].can,
    );
    expect(schemaCreate).toBe(false);
  });

  it('concurrent writers on several connections keep one chain: no fork, no gap', async () => {
    const schema = await preparedSchema();
    const apps = await Promise.all([1, 2, 3, 4].map(() => openAppAs(APP, schema)));
    const WRITERS_PER_APP = 4;
    const ROUNDS = 10;
    await Promise.all([
      ...apps.flatMap((app, a) =>
        Array.from({ length: WRITERS_PER_APP }, async (_, w) => {
          for (let round = 0; round < ROUNDS; round++) {
            // One entry, or two in one transaction: both take the chain's head under the same lock.
            const entries = Array.from({ length: 1 + (round % 2) }, (_, i) => ({
              actor: `writer-${a}-${w}`,
              action: 'test.concurrent' as AuditAction,
              details: { round, i },
            }));
            await app.audit.record(entries);
          }
        }),
      ),
      // Ingest appends its own entries meanwhile.
      apps[0]!.ingest({ path: leadFile('concurrent-a', 20) }),
      apps[1]!.ingest({ path: leadFile('concurrent-b', 20) }),
    ]);

    const perWriter = ROUNDS + Math.floor(ROUNDS / 2);
    const verification = await apps[3]!.audit.verify();
    const { rows } = await sql<{
      total: number;
      ours: number;
      distinct_prev: number;
      max_seq: number;
    }>`select count(*)::int as total,
         count(*) filter (where action = 'test.concurrent')::int as ours,
         count(distinct prev_hash)::int as distinct_prev, max(seq)::int as max_seq
       from audit_log`.execute(apps[2]!.store.db);
    const counts = rows[0]!;
    expect(counts.ours).toBe(apps.length * WRITERS_PER_APP * perWriter);
    expect(verification).toMatchObject({ ok: true, entries: counts.total, firstBreak: null });
    // One chain: every entry names a different predecessor, and sequence numbers have no gap.
    expect(counts.distinct_prev).toBe(counts.total);
    expect(counts.max_seq).toBe(counts.total);
  });

  it('the app role refuses a schema with pending migrations and names `valhalla db migrate`; the owner migrates it', async () => {
    const schema = await ownedSchema();
    // The schema as the previous release left it: every migration but the latest, applied by the owner.
    const owner = await openStoreAs(OWNER, schema, { migrate: false });
    const known = migrations('postgres');
    await owner.db.transaction().execute(async (trx) => {
      await sql`create table valhalla_migration (name varchar(255) not null primary key, timestamp varchar(255) not null)`.execute(
        trx,
      );
      for (const name of MIGRATION_NAMES.slice(0, -1)) {
        await known[name]!.up(trx);
        await sql`insert into valhalla_migration (name, timestamp) values (${name}, ${new Date().toISOString()})`.execute(
          trx,
        );
      }
    });
    await applyGrants(owner, { schema, appRole: APP });
    await owner.close();

    const refused = await openAppAs(APP, schema).then(
      () => null,
      (error: Error & { code?: string }) => error,
    );
    expect(refused).toMatchObject({ name: 'StoreError', code: 'MIGRATION_FAILED' });
    expect(refused?.message).toContain('valhalla db migrate');
    expect(refused?.message).toContain(LATEST_MIGRATION);
    expect(refused?.message).toContain(`"${OWNER}"`);
    // The same through the CLI, and nothing was applied by the app role.
    const cli = await cliAs(APP, schema, ['db', 'migrate']);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain('valhalla db migrate');
    const applied = await asSuperuser(
      async (c) => (await c.query(`select name from ${schema}.valhalla_migration order by name`)).rows,
    );
    expect(applied.map((r) => r.name)).toEqual(MIGRATION_NAMES.slice(0, -1));

    // The upgrade: the owner migrates and re-applies the grants in one command; the runner starts.
    const upgraded = await cliAs(OWNER, schema, ['db', 'migrate', '--app-role', APP]);
    expect(upgraded.stderr).toBe('');
    expect(upgraded.code).toBe(0);
    expect(upgraded.stdout).toBe(
      `applied ${LATEST_MIGRATION}\ngrants applied to "${APP}" on schema ${schema}\n`,
    );
    const app = await openAppAs(APP, schema);
    await app.audit.record({ actor: 'pg-roles-test', action: 'test.after-upgrade' as AuditAction });
    expect(await app.audit.verify()).toMatchObject({ ok: true });
    // The tables the latest migration added are granted too.
    const ungranted = await asSuperuser(
      async (c) =>
        (
          await c.query(
            `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relkind = 'r' and not has_table_privilege($2, c.oid, 'SELECT')`,
            [schema, APP],
          )
        ).rows,
    );
    expect(ungranted).toEqual([]);
  });

  it('the app role cannot create the schema either: a fresh schema is refused with what to do', async () => {
    const schema = await ownedSchema();
    const refusedOpen = () =>
      openStoreAs(APP, schema).then(
        () => null,
        (error: Error & { code?: string }) => error,
      );
    // Without USAGE on the schema (nothing granted yet), then with USAGE but no CREATE.
    const withoutUsage = await refusedOpen();
    expect(withoutUsage).toMatchObject({ name: 'StoreError', code: 'MIGRATION_FAILED' });
    expect(withoutUsage?.message).toContain('valhalla db migrate');
    await asSuperuser((c) => c.query(`grant usage on schema ${schema} to ${APP}`));
    const withUsage = await refusedOpen();
    expect(withUsage).toMatchObject({ name: 'StoreError', code: 'MIGRATION_FAILED' });
    expect(withUsage?.message).toContain('permission denied for schema');
    expect(withUsage?.message).toContain('valhalla db migrate');
    const tables = await asSuperuser(
      async (c) => (await c.query(`select 1 from pg_tables where schemaname = $1`, [schema])).rowCount,
    );
    expect(tables).toBe(0);
  });

  it('the grants refuse a runners role that could still change the chain, a bad name, and SQLite', async () => {
    const schema = await preparedSchema();
    const member = await cliAs(OWNER, schema, ['db', 'grants', '--app-role', OWNER_MEMBER, '--apply']);
    expect(member.code).toBe(3);
    expect(member.stderr).toContain(`member of, the owner "${OWNER}"`);
    // Rolled back: the member got nothing from it.
    const granted = await asSuperuser(
      async (c) =>
        (
          await c.query(
            `select count(*)::int as n from information_schema.role_table_grants where grantee = $1`,
            [OWNER_MEMBER],
          )
        ).rows[0].n,
    );
    expect(granted).toBe(0);

    const selfGrant = await cliAs(OWNER, schema, ['db', 'grants', '--app-role', OWNER, '--apply']);
    expect(selfGrant.code).toBe(3);

    const notOwner = await cliAs(APP, schema, ['db', 'grants', '--app-role', APP, '--apply']);
    expect(notOwner.code).toBe(3);
    expect(notOwner.stderr).toContain(`connect as their owner ("${OWNER}")`);

    const badName = await cliAs(OWNER, schema, ['db', 'grants', '--app-role', 'app"; drop table leads; --']);
    expect(badName.code).toBe(2);
    expect(badName.stderr).toContain('invalid role name');

    const badNameMigrate = await cliAs(OWNER, await ownedSchema(), [
      'db',
      'migrate',
      '--app-role',
      'Bad-Name',
    ]);
    expect(badNameMigrate.code).toBe(2);
    expect(badNameMigrate.stdout).toBe(''); // refused before migrating anything

    const dir = tempDir();
    const sqliteEnv = { env: testEnv(dir, { VALHALLA_DATABASE_URL: join(dir, 'valhalla.db') }), cwd: dir };
    const sqlite = await runInProcess(['db', 'grants', '--app-role', APP], sqliteEnv);
    expect(sqlite.code).toBe(3);
    expect(sqlite.stderr).toContain('PostgreSQL');
    // On SQLite `db migrate` makes no database (only `init` does); on one it simply migrates.
    const noDatabase = await runInProcess(['db', 'migrate'], sqliteEnv);
    expect(noDatabase.code).toBe(1);
    expect(noDatabase.stderr).toContain(`no database at ${join(dir, 'valhalla.db')}`);
    const older = await openStore({ kind: 'sqlite', path: join(dir, 'valhalla.db') }, { migrate: false });
    await older.close();
    const sqliteMigrate = await runInProcess(['db', 'migrate'], sqliteEnv);
    expect(sqliteMigrate.code).toBe(0);
    expect(sqliteMigrate.stdout).toContain(`applied ${LATEST_MIGRATION}`);
  });
});
