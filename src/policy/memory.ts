/**
 * The worker is restarted when its RSS passes this share of the policy's memory per process (358 MB
 * of 512), so that the worker and the supervisor together stay inside the service's 512 MB (systemd's
 * MemoryMax): the supervisor's restart, audited and alerted, comes before the kernel's OOM kill. The
 * supervisor with the dashboard server measures 110-140 MB RSS here; a worker in normal work ~125 MB.
 */
export const WORKER_RSS_SHARE = 0.7;

/**
 * The worker's RSS, in bytes, past which the supervisor restarts it: 70% of the policy's memory per
 * process. The same number is exposed as `valhalla_worker_rss_restart_bytes`, which the memory alert
 * compares against, so the alert follows the policy file instead of repeating its arithmetic.
 */
export function workerRestartRssBytes(memoryPerProcessMb: number): number {
  return Math.floor(memoryPerProcessMb * 1024 * 1024 * WORKER_RSS_SHARE);
}
