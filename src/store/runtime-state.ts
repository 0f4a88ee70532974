import type { Executor } from './executor.js';

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
