import type { Transaction } from 'kysely';
import type { Executor } from './executor.js';
import type { Database } from './schema.js';

/** The values under these keys, read together (one consistent read); a key without a value is absent. */
export async function getRuntimeValues(db: Executor, keys: readonly string[]): Promise<Map<string, string>> {
  const rows = await db
    .selectFrom('runtime_state')
    .select(['key', 'value'])
    .where('key', 'in', [...keys])
    .execute();
  return new Map(rows.map((row) => [row.key, row.value]));
}

/**
 * Write the row under `key` unchanged, before reading it: on SQLite this takes the write lock (a
 * transaction that reads first fails when another process wrote meanwhile); on PostgreSQL it locks
 * the row, so two transactions that change it are applied one after the other, the second seeing the
 * first. A key without a row locks nothing on PostgreSQL.
 */
export async function lockRuntimeValue(trx: Transaction<Database>, key: string): Promise<void> {
  await trx
    .updateTable('runtime_state')
    .set((eb) => ({ updated_at: eb.ref('updated_at') }))
    .where('key', '=', key)
    .execute();
}
