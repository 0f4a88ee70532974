import { existsSync } from 'node:fs';
import SqliteDatabase from 'better-sqlite3';
import { StoreError } from './errors.js';
import type { StoreDb } from './executor.js';
import type { StoreTarget } from './open.js';
import { getRuntimeValue, insertRuntimeValueIfAbsent } from './runtime-state.js';

/** The runtime key `valhalla init` writes once, with its `system.initialized` audit entry. */
export const INITIALIZED_KEY = 'initialized_at';

export type InstallationProbe = { found: true; initializedAt: number } | { found: false; why: string };

/**
 * Is there an installation (a store made by `valhalla init`) at this target? Looks without creating
 * anything: no file, no folder, no schema, no table. Every command but `init` asks this first, so that
 * a command run in the wrong place fails instead of starting a plausible empty installation there.
 */
export async function probeInstallation(target: StoreTarget): Promise<InstallationProbe> {
  return target.kind === 'sqlite' ? probeSqlite(target.path) : probePostgres(target.url, target.schema);
}

function probeSqlite(path: string): InstallationProbe {
  if (path === ':memory:') return { found: false, why: 'an in-memory database holds no installation' };
  if (!existsSync(path)) return { found: false, why: `no database file at ${path}` };
  let db: SqliteDatabase.Database;
  try {
    db = new SqliteDatabase(path, { fileMustExist: true });
  } catch (cause) {
    throw new StoreError(
      'DATABASE_UNAVAILABLE',
      `cannot open the SQLite database ${path}: ${(cause as Error).message}`,
      { cause },
    );
  }
  try {
    db.pragma('busy_timeout = 5000');
    const table = db
      .prepare("select 1 from sqlite_master where type = 'table' and name = 'runtime_state'")
      .get();
    if (table === undefined) {
      return { found: false, why: `${path} is not a Valhalla database (no runtime_state table)` };
    }
    const row = db.prepare('select value from runtime_state where key = ?').get(INITIALIZED_KEY) as
      | { value: string }
      | undefined;
    if (row === undefined) return { found: false, why: `the database ${path} was never initialised` };
    return { found: true, initializedAt: Date.parse(row.value) };
  } finally {
    db.close();
  }
}

async function probePostgres(url: string, schema: string | undefined): Promise<InstallationProbe> {
  const where = schema === undefined ? 'the default schema' : `schema ${schema}`;
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (cause) {
    throw new StoreError(
      'DATABASE_UNAVAILABLE',
      `cannot connect to PostgreSQL: ${(cause as Error).message}`,
      { cause },
    );
  }
  try {
    const table =
      schema === undefined
        ? "select to_regclass('runtime_state') as t"
        : 'select to_regclass(format($1, $2::text)) as t';
    const found = await client.query<{ t: string | null }>(
      table,
      schema === undefined ? [] : ['%I.runtime_state', schema],
    );
    if (found.rows[0]?.t == null) return { found: false, why: `no Valhalla tables in ${where}` };
    const qualified = schema === undefined ? 'runtime_state' : `"${schema}".runtime_state`;
    const row = await client.query<{ value: string }>(`select value from ${qualified} where key = $1`, [
      INITIALIZED_KEY,
    ]);
    const value = row.rows[0]?.value;
    if (value === undefined) return { found: false, why: `${where} was never initialised` };
    return { found: true, initializedAt: Date.parse(value) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The runtime key holding the installation's id (a UUID; `valhalla init` makes it, with its audit entry). */
export const INSTALLATION_ID_KEY = 'installation_id';

/** The installation's id, or undefined when this store has none yet. */
export async function readInstallationId(db: StoreDb): Promise<string | undefined> {
  return getRuntimeValue(db, INSTALLATION_ID_KEY);
}

/**
 * Record `id` as the installation's id unless one is recorded already (two processes upgrading an
 * older store at once agree on the first); returns the id in force and whether it is `id`.
 */
export async function claimInstallationId(
  trx: StoreDb,
  id: string,
  now: number,
): Promise<{ id: string; claimed: boolean }> {
  await insertRuntimeValueIfAbsent(trx, INSTALLATION_ID_KEY, id, now);
  const inForce = (await getRuntimeValue(trx, INSTALLATION_ID_KEY)) ?? id;
  return { id: inForce, claimed: inForce === id };
}
