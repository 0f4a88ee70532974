import type { Executor, StoreTransaction } from './executor.js';

// The runtime_state table's one repository: values under keys, written and read only here.

export async function getRuntimeValue(db: Executor, key: string): Promise<string | undefined> {
  const row = await db.selectFrom('runtime_state').select('value').where('key', '=', key).executeTakeFirst();
  return row?.value;
}

export async function setRuntimeValue(db: Executor, key: string, value: string, now: number): Promise<void> {
  await db
    .insertInto('runtime_state')
    .values({ key, value, updated_at: now })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value, updated_at: now }))
    .execute();
}

/** Write `value` under `key` unless the key holds one already; true when this call wrote it. */
export async function insertRuntimeValueIfAbsent(
  db: Executor,
  key: string,
  value: string,
  now: number,
): Promise<boolean> {
  const inserted = await db
    .insertInto('runtime_state')
    .values({ key, value, updated_at: now })
    .onConflict((oc) => oc.column('key').doNothing())
    .returning('key')
    .execute();
  return inserted.length === 1;
}

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
export async function lockRuntimeValue(trx: StoreTransaction, key: string): Promise<void> {
  await trx
    .updateTable('runtime_state')
    .set((eb) => ({ updated_at: eb.ref('updated_at') }))
    .where('key', '=', key)
    .execute();
}

/**
 * Set `key` to `value` only when it holds `expected` now (in the caller's transaction); true when
 * this call changed it, false when another process changed it first.
 */
export async function compareAndSetRuntimeValue(
  trx: StoreTransaction,
  key: string,
  expected: string,
  value: string,
  now: number,
): Promise<boolean> {
  const result = await trx
    .updateTable('runtime_state')
    .set({ value, updated_at: now })
    .where('key', '=', key)
    .where('value', '=', expected)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}
