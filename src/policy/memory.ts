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

/**
 * V8's semi-space for the worker, in MB (`--max-semi-space-size`). Its young generation is three of
 * them (two semi-spaces and the new large-object space): 24 MB. Set explicitly so that the heap limit
 * is known, not V8's choice from the old space (48 MB by default at these sizes).
 */
export const WORKER_SEMI_SPACE_MB = 8;

/**
 * The worker's V8 flags for the policy's memory per process: the whole heap (old space plus young
 * generation: V8's `heap_size_limit`) is exactly the policy's number, never more. With 512: old space
 * 488 MB + young generation 24 MB = 512 MB. (`--max-old-space-size=512` alone gives a 560 MB heap.)
 */
export function workerHeapFlags(memoryPerProcessMb: number): string[] {
  const oldSpaceMb = memoryPerProcessMb - 3 * WORKER_SEMI_SPACE_MB;
  return [`--max-old-space-size=${oldSpaceMb}`, `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`];
}

/**
 * Whether a heap limit a worker reported (V8's `heap_size_limit`, bytes) keeps the policy's memory per
 * process: the whole heap within the number, with no allowance on top.
 */
export function heapLimitWithinPolicy(heapLimitBytes: number, memoryPerProcessMb: number): boolean {
  return heapLimitBytes <= memoryPerProcessMb * 1024 * 1024;
}
