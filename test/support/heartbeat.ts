import type { Kysely } from 'kysely';
import { type Database, recordHeartbeat } from '../../src/store/index.js';

/** A worker's heartbeat as `valhalla worker` writes it (what `rearm` looks for after a restart). */
export async function workerBeat(
  db: Kysely<Database>,
  beat: { at: number; startedAt: number; pid?: number },
): Promise<void> {
  await recordHeartbeat(db, {
    at: beat.at,
    runner: `test-host:${beat.pid ?? 4000}`,
    pid: beat.pid ?? 4000,
    worker_started_at: beat.startedAt,
    phase: 4,
    rss_bytes: 100 * 1024 * 1024,
    heap_used_bytes: 50 * 1024 * 1024,
    state: 'idle',
    cycle_id: null,
  });
}
