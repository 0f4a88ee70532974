import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openApp } from '../app/index.js';
import { systemSleep } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { leadKey, runCycles } from '../engine/index.js';
import { readMode, writeGoLiveAt } from '../guard/index.js';
import { watchMode } from '../monitor/index.js';
import { startSandboxPartner } from '../sandbox/index.js';
import { deliveriesInState, leadOutcomes } from '../store/index.js';
import { privateGates, privatePhase4Config } from './private-install.js';

const DRILL_GATES = privateGates('rollback drill');

export interface DrillOptions {
  /** The installation's configuration: its policy file and operator are the drill's. */
  config: Config;
  /** Leads to load into the drill's database. */
  leads?: number;
  /** Batches the sandbox must have accepted before the rollback is triggered. */
  warmupBatches?: number;
  /** Extra wait before the trigger (the bench varies it so the trigger lands at every point of a cycle). */
  triggerDelayMs?: number;
  /** How long the worker keeps running (as a dry run) after the trigger before the checks. */
  observeMs?: number;
}

export interface DrillCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DrillResult {
  passed: boolean;
  startedAt: string;
  /** The whole drill, set-up to checks (the policy: a rollback in under 5 minutes). */
  durationMs: number;
  /** From the rollback command to its commit (mode rolled_back, audited, alerted). */
  triggerToModeMs: number;
  /** From the trigger to the worker's mode watch holding new requests (null: it never did). */
  triggerToHoldMs: number | null;
  /** From the trigger to the start of the last partner request seen after it; 0 when none started after it. */
  lastRequestAfterTriggerMs: number;
  requestsBeforeTrigger: number;
  requestsAfterTrigger: number;
  exported: number;
  keptInQueue: number;
  checks: DrillCheck[];
}

/**
 * A timed rollback drill (gate 7): a private database with synthetic leads, the real engine sending
 * to an in-process sandbox partner, a rollback triggered from outside the worker (as `valhalla
 * rollback` or the dashboard would), then the checks that the state is clean: outbound stopped
 * within a second, nothing lost, nothing sent twice, nothing left mid-request, the chain intact.
 */
export async function runRollbackDrill(options: DrillOptions): Promise<DrillResult> {
  const began = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-drill-'));
  const sandbox = await startSandboxPartner({ certDir: join(dir, 'cert'), faults: { latencyMs: 20 } });
  try {
    const config = privatePhase4Config({
      dir,
      name: 'drill',
      installation: options.config,
      partner: sandbox,
    });
    const app = await openApp({ config });
    try {
      const leadCount = options.leads ?? 200;
      const file = join(dir, 'drill-leads.jsonl');
      const now = app.clock.now();
      writeFileSync(
        file,
        Array.from({ length: leadCount }, (_, i) =>
          JSON.stringify({
            external_id: `drill-${i}`,
            name: `Drill Lead ${i}`,
            email: `drill-lead-${i}@drill.invalid`,
            score: 50 + (i % 50),
            source_timestamp: new Date(now - 3_600_000).toISOString(),
            value: 10,
          }),
        ).join('\n'),
      );
      await app.ingest({ path: file });
      // Past the ramp: the drill exercises the rollback, not ramp stage 1's confirmations.
      await writeGoLiveAt(app.store.db, now - 30 * 3_600_000);

      const watch = watchMode(app.store, app.logger);
      const stop = new AbortController();
      // Its outcome is awaited below; caught now, so a failure during the warm-up is not unhandled.
      const worker = runCycles({
        engine: app.engine({ gates: DRILL_GATES }),
        clock: app.clock,
        sleep: systemSleep,
        logger: app.logger,
        // Short, but a real wait: SQLite work never yields to timers, and the mode watch needs them.
        intervalMs: 100,
        signal: stop.signal,
        holdNew: () => watch.signal(),
      }).then(
        () => null,
        (error: unknown) => error,
      );
      let triggeredAt = 0;
      let triggerToModeMs = 0;
      let heldAt: number | null = null;
      let workerFailure: unknown = null;
      try {
        const warmup = options.warmupBatches ?? 3;
        for (let i = 0; i < 200 && sandbox.stats().batches.accepted < warmup; i++) await systemSleep(50);
        await systemSleep(options.triggerDelayMs ?? 0);
        // When the worker's mode watch saw the rollback (it holds every request not yet started).
        watch.signal().addEventListener('abort', () => {
          heldAt = Date.now();
        });
        triggeredAt = Date.now();
        await app.changeMode('rollback', { reason: 'rollback drill', gates: DRILL_GATES });
        triggerToModeMs = Date.now() - triggeredAt;
        await systemSleep(options.observeMs ?? 1_500);
      } finally {
        // Whatever happened, the cycles stop before the drill's store is closed.
        stop.abort();
        watch.stop();
        workerFailure = await worker;
      }
      if (workerFailure) throw workerFailure;
      const triggerToHoldMs = heldAt === null ? null : (heldAt as number) - triggeredAt;

      const starts = sandbox.stats().requestStarts;
      const after = starts.filter((t) => t >= triggeredAt);
      const lastRequestAfterTriggerMs = after.length === 0 ? 0 : Math.max(...after) - triggeredAt;
      const records = sandbox.records();
      const sentKeys = new Set(Object.keys(records.leadBatches));
      const twice = Object.values(records.leadBatches).filter((batches) => batches.length > 1).length;
      const leads = await leadOutcomes(app.store.db);
      const exportedKeys = new Set(leads.filter((l) => l.state === 'exported').map((l) => leadKey(l)));
      const sending = await deliveriesInState(app.store.db, 'sending');
      const keptInQueue = leads.filter((l) => l.state === 'pending' || l.state === 'in_flight').length;
      const verification = await app.audit.verify();
      const mode = await readMode(app.store.db);
      const sameSets = sentKeys.size === exportedKeys.size && [...sentKeys].every((k) => exportedKeys.has(k));
      const checks: DrillCheck[] = [
        { name: 'mode rolled back', ok: mode === 'rolled_back', detail: `mode is ${mode}` },
        {
          name: 'worker held new requests within 1 s',
          ok: triggerToHoldMs !== null && triggerToHoldMs <= 1_000,
          detail: triggerToHoldMs === null ? 'never' : `${triggerToHoldMs} ms after the trigger`,
        },
        {
          name: 'outbound stopped within 1 s',
          ok: lastRequestAfterTriggerMs <= 1_000,
          detail: `${after.length} request(s) started after the trigger, the last ${lastRequestAfterTriggerMs} ms after it`,
        },
        {
          name: 'no batch left mid-request',
          ok: sending.length === 0,
          detail: `${sending.length} batch(es) in state sending`,
        },
        {
          name: 'partner and database agree',
          ok: sameSets,
          detail: `${sentKeys.size} lead(s) at the partner, ${exportedKeys.size} exported in the database`,
        },
        { name: 'no lead sent twice', ok: twice === 0, detail: `${twice} lead(s) in more than one batch` },
        {
          name: 'nothing lost',
          ok: leads.length === leadCount && exportedKeys.size + keptInQueue === leadCount,
          detail: `${leadCount} loaded: ${exportedKeys.size} exported + ${keptInQueue} kept in the queue`,
        },
        {
          name: 'audit chain verifies',
          ok: verification.ok,
          detail: `${verification.entries} entries${verification.ok ? '' : ', broken'}`,
        },
      ];
      const durationMs = Date.now() - began;
      checks.push({
        name: `drill under ${options.config.policy.rollbackMaxMinutes} minutes`,
        ok: durationMs < options.config.policy.rollbackMaxMinutes * 60_000,
        detail: `${(durationMs / 1000).toFixed(1)} s`,
      });
      return {
        passed: checks.every((c) => c.ok),
        startedAt: new Date(began).toISOString(),
        durationMs,
        triggerToModeMs,
        triggerToHoldMs,
        lastRequestAfterTriggerMs,
        requestsBeforeTrigger: starts.length - after.length,
        requestsAfterTrigger: after.length,
        exported: exportedKeys.size,
        keptInQueue,
        checks,
      };
    } finally {
      await app.close();
    }
  } finally {
    await sandbox.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
