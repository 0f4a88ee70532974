import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { StoreTarget } from '../../src/store/index.js';
import { tempDir } from './tmp.js';

export const PG_URL = process.env.VALHALLA_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface Backend {
  name: 'sqlite' | 'postgres';
  /** A fresh, empty database of this kind: a new SQLite file, or a new PostgreSQL schema. */
  target(): StoreTarget;
  /** The same, as a VALHALLA_DATABASE_URL value. */
  databaseUrl(): string;
}

const schemas: string[] = [];

/**
 * PostgreSQL is required when CI=true (an unreachable server fails the run); elsewhere its tests
 * are skipped with a printed reason when no server answers.
 */
export async function postgresAvailable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch (error) {
    if (process.env.CI === 'true') {
      throw new Error(`CI=true but PostgreSQL is not reachable at ${PG_URL}: ${(error as Error).message}`);
    }
    console.warn(
      `[skip] PostgreSQL tests skipped: no server at ${PG_URL} (${(error as Error).message}); CI=true makes this a failure`,
    );
    return false;
  }
}

export const sqliteBackend: Backend = {
  name: 'sqlite',
  target: () => ({ kind: 'sqlite', path: join(tempDir(), 'valhalla.db') }),
  databaseUrl: () => join(tempDir(), 'valhalla.db'),
};

function newSchema(): string {
  const schema = `vt_${randomBytes(6).toString('hex')}`;
  schemas.push(schema);
  return schema;
}

export const postgresBackend: Backend = {
  name: 'postgres',
  target: () => ({ kind: 'postgres', url: PG_URL, schema: newSchema() }),
  databaseUrl: () => `${PG_URL}?schema=${newSchema()}`,
};

/** The backends to run integration tests on: SQLite always, PostgreSQL when reachable (always in CI). */
export async function backends(): Promise<Backend[]> {
  return (await postgresAvailable()) ? [sqliteBackend, postgresBackend] : [sqliteBackend];
}

/** Drop every schema this test file created. */
export async function dropTestSchemas(): Promise<void> {
  if (schemas.length === 0) return;
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    for (const schema of schemas.splice(0)) await client.query(`drop schema if exists ${schema} cascade`);
  } finally {
    await client.end();
  }
}

/**
 * Whether the database a `databaseUrl()` value names exists yet: the SQLite file, or the PostgreSQL
 * schema (the product creates either when it first opens it). For tests that must see which
 * database a command used, or that it left one alone.
 */
export async function databaseExists(databaseUrl: string): Promise<boolean> {
  if (!/^postgres(ql)?:\/\//i.test(databaseUrl)) return existsSync(databaseUrl);
  const schema = new URL(databaseUrl).searchParams.get('schema') ?? 'public';
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    const found = await client.query('select 1 from information_schema.schemata where schema_name = $1', [
      schema,
    ]);
    return found.rowCount === 1;
  } finally {
    await client.end();
  }
}

/** `work` on a connection of its own to the test server as its superuser (roles, terminations, catalogs). */
export async function withPgAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
