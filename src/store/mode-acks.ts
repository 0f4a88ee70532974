import type { Insertable } from 'kysely';
import type { Executor } from './executor.js';
import type { Heartbeat, ModeAck, ModeAcksTable } from './schema.js';

/** A worker's acknowledgement of a mode change; a second one for the same change and worker is ignored. */
export async function recordModeAck(db: Executor, ack: Insertable<ModeAcksTable>): Promise<void> {
  await db
    .insertInto('mode_acks')
    .values(ack)
    .onConflict((oc) => oc.columns(['change_seq', 'runner', 'worker_started_at']).doNothing())
    .execute();
}

/** Every worker's acknowledgement of this change, first first. */
export async function modeAcksFor(db: Executor, changeSeq: number): Promise<ModeAck[]> {
  return db
    .selectFrom('mode_acks')
    .selectAll()
    .where('change_seq', '=', changeSeq)
    .orderBy('acked_at')
    .execute();
}

/**
 * The workers that look alive: the latest heartbeat of each worker (runner and start) at or after
 * `since`, unless that heartbeat says it stopped. A worker killed without a word stays here until its
 * last heartbeat is older than `since`: a caller waiting on it says so rather than assume.
 */
export async function runningWorkers(db: Executor, since: number): Promise<Heartbeat[]> {
  const rows = await db.selectFrom('heartbeats').selectAll().where('at', '>=', since).orderBy('id').execute();
  const latest = new Map<string, Heartbeat>();
  for (const row of rows) latest.set(`${row.runner}@${row.worker_started_at}`, row);
  return [...latest.values()].filter((beat) => beat.state !== WORKER_STOPPED);
}

/** The state of a worker's last heartbeat when it stopped cleanly. */
export const WORKER_STOPPED = 'stopped';
