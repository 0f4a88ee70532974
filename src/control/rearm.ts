import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { type GateClearance, readModeChangedAt } from '../guard/index.js';
import { heartbeatsBetween, type Store } from '../store/index.js';

/**
 * Why a re-arm after a rollback is not allowed now, or null: it needs Phase 4, the gates cleared,
 * and positive evidence that the worker was restarted since the rollback.
 */
export async function rearmRefusal(
  deps: { store: Store; clock: Clock; config: Config },
  clearance: GateClearance,
): Promise<string | null> {
  const { store, clock, config } = deps;
  if (config.phase !== 4) return `this process is Phase ${config.phase}: re-arm from a Phase 4 configuration`;
  const checked = await clearance.check();
  if (!checked.cleared) return `the gates are not verified: ${checked.reason}`;
  const rolledBackAt = (await readModeChangedAt(store.db)) ?? 0;
  const now = clock.now();
  const windowS = 2 * config.policy.heartbeatIntervalSeconds;
  const recent = await heartbeatsBetween(store.db, now - windowS * 1000, now + 1);
  // Positive evidence of the restart: a worker started after the rollback (its start verified the
  // gates in Phase 4) beats now; and no worker from before the rollback has beaten since it started.
  const fresh = recent.filter((h) => h.worker_started_at > rolledBackAt);
  const freshSince = fresh.length === 0 ? 0 : Math.min(...fresh.map((h) => h.worker_started_at));
  const stale = recent.find((h) => h.worker_started_at <= rolledBackAt && h.at >= freshSince);
  if (stale) {
    return `the worker running at the rollback (pid ${stale.pid}, started ${new Date(stale.worker_started_at).toISOString()}) is still running: restart \`valhalla run\` in Phase 4 first`;
  }
  if (fresh.length === 0) {
    return `no worker started since the rollback has reported a heartbeat in the last ${windowS} s: restart \`valhalla run\` in Phase 4 (its start verifies the gates), then re-arm`;
  }
  return null;
}
