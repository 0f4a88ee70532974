/**
 * A Phase 4 worker that kills itself with SIGKILL at one named point of a delivery's life, for the
 * fault suite's kill -9 scenarios (test/faults/kill-points.test.ts). Otherwise it is live-worker.ts:
 * the real app, engine, guard, store and partner client (built from the configuration exactly as
 * `valhalla run` builds it), the gate clearance given, the go-live time far enough back that the ramp
 * is at its last stage. Not part of the product.
 *
 * The points are reached by wrapping only what the engine already takes from outside (no hook in
 * src/): the partner port (`app.engine({ partner })`), the engine's sleep (it waits only for a retry
 * that falls due within the cycle, right after the `retry_wait` commit), and runCycles' `onCycle`
 * (called right after the cycle's last commit). VALHALLA_TEST_KILL_AT names the point:
 *
 *   queued       a batch request is about to start while another live batch is committed `queued`
 *                (a due retry goes first): the queued one never reaches the partner
 *   sending      a batch is committed `sending` (the guard's decision too); its request is about to start
 *   answered     the partner has answered, the outcome is not committed (the answer is lost); with
 *                VALHALLA_TEST_KILL_MIN_ATTEMPT=n only on the delivery's n-th attempt or later
 *   accepted     an accepted outcome has committed (the cycle that recorded it has finished)
 *   retry_wait   a retryable failure has committed `retry_wait`; the backoff wait is about to begin
 *   backoff      VALHALLA_TEST_KILL_AFTER_MS into the backoff wait
 *   quarantined  a quarantine has committed (the cycle that recorded it has finished)
 *
 * Just before dying it writes one line `{"killedAt":…}` to stdout (synchronously). Without a kill
 * point and with VALHALLA_TEST_UNTIL_DONE=1 it stops as soon as no lead or batch is left to send.
 *
 *   node dist-test/test/harness/fault-worker.js [max cycles]
 */
import { writeSync } from 'node:fs';
import { openApp } from '../../src/app/index.js';
import { createPartnerClientFromConfig } from '../../src/app/partner.js';
import { type Sleep, systemSleep } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { type PartnerPort, runCycles } from '../../src/engine/index.js';
import { readGoLiveAt, writeGoLiveAt } from '../../src/guard/index.js';
import { CLEARED, DAY } from '../support/world.js';

const KILL_POINTS = [
  'queued',
  'sending',
  'answered',
  'accepted',
  'retry_wait',
  'backoff',
  'quarantined',
] as const;
type KillPoint = (typeof KILL_POINTS)[number];

const cycles = process.argv[2] ? Number(process.argv[2]) : undefined;
// The harness's own VALHALLA_TEST_* settings are kept out of the product's environment (loadConfig
// refuses unknown VALHALLA_* names as likely typos).
const {
  VALHALLA_TEST_INTERVAL_MS,
  VALHALLA_TEST_KILL_AT,
  VALHALLA_TEST_KILL_MIN_ATTEMPT,
  VALHALLA_TEST_KILL_AFTER_MS,
  VALHALLA_TEST_UNTIL_DONE,
  ...productEnv
} = process.env;
const killAt = (VALHALLA_TEST_KILL_AT ?? null) as KillPoint | null;
if (killAt !== null && !KILL_POINTS.includes(killAt)) {
  throw new Error(`VALHALLA_TEST_KILL_AT=${killAt} is not one of ${KILL_POINTS.join(', ')}`);
}
const minAttempt = Number(VALHALLA_TEST_KILL_MIN_ATTEMPT ?? 1);
const killAfterMs = Number(VALHALLA_TEST_KILL_AFTER_MS ?? 500);

const app = await openApp({ config: loadConfig({ env: productEnv, cwd: process.cwd() }) });
if ((await readGoLiveAt(app.store.db)) === null) {
  await writeGoLiveAt(app.store.db, app.clock.now() - 7 * DAY);
}
const db = app.store.db;

/** kill -9 of this process, here: nothing after this line runs, no handler, no flush, no commit. */
function die(point: KillPoint, details: Record<string, unknown>): never {
  writeSync(1, `${JSON.stringify({ killedAt: point, at: Date.now(), ...details })}\n`);
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL to oneself is delivered before kill(2) returns; this is never reached.
  throw new Error('still alive after SIGKILL');
}

async function deliveryOf(batchKey: string) {
  return db
    .selectFrom('deliveries')
    .select(['id', 'state', 'attempts'])
    .where('batch_key', '=', batchKey)
    .executeTakeFirstOrThrow();
}

const client = createPartnerClientFromConfig(app.config, app.clock);
const partner: PartnerPort = {
  health: (signal) => client.health(signal),
  ensureToken: (validForMs, signal) => client.ensureToken(validForMs, signal),
  async sendBatch(batch, signal, holdNew) {
    if (killAt === 'sending') {
      const delivery = await deliveryOf(batch.batchKey);
      die('sending', { batchKey: batch.batchKey, state: delivery.state, attempts: delivery.attempts });
    }
    if (killAt === 'queued') {
      const queued = await db
        .selectFrom('deliveries')
        .select('batch_key')
        .where('kind', '=', 'live')
        .where('state', '=', 'queued')
        .where('batch_key', '<>', batch.batchKey)
        .execute();
      if (queued.length > 0)
        die('queued', { batchKey: batch.batchKey, queued: queued.map((d) => d.batch_key) });
    }
    const outcome = await client.sendBatch(batch, signal, holdNew);
    if (killAt === 'answered') {
      const delivery = await deliveryOf(batch.batchKey);
      if (delivery.attempts >= minAttempt) {
        die('answered', {
          batchKey: batch.batchKey,
          attempts: delivery.attempts,
          outcome: outcome.kind,
          status: 'status' in outcome ? (outcome.status ?? null) : null,
        });
      }
    }
    return outcome;
  },
};

const engineSleep: Sleep = async (ms, signal) => {
  if (killAt === 'retry_wait') die('retry_wait', { waitMs: ms });
  if (killAt === 'backoff') {
    await systemSleep(Math.min(ms, killAfterMs), signal);
    die('backoff', { waitMs: ms, killedAfterMs: Math.min(ms, killAfterMs) });
  }
  await systemSleep(ms, signal);
};

/** Whether anything is left to send: a lead waiting or on its way, or a batch not finished. */
async function workLeft(): Promise<boolean> {
  const leads = await db
    .selectFrom('leads')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('state', 'in', ['pending', 'in_flight'])
    .executeTakeFirstOrThrow();
  const batches = await db
    .selectFrom('deliveries')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('kind', '=', 'live')
    .where('state', 'in', ['queued', 'sending', 'retry_wait'])
    .executeTakeFirstOrThrow();
  return Number(leads.n) + Number(batches.n) > 0;
}

const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
const engine = app.engine({
  gates: CLEARED,
  partner,
  sleep: engineSleep,
});
let checking = Promise.resolve();
await runCycles({
  engine,
  clock: app.clock,
  sleep: systemSleep,
  logger: app.logger,
  intervalMs: Number(VALHALLA_TEST_INTERVAL_MS ?? 20),
  ...(cycles !== undefined ? { maxCycles: cycles } : {}),
  signal: stop.signal,
  onCycle: (report) => {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    if (killAt === 'accepted' && report.accepted > 0) die('accepted', { cycle: report.cycleId });
    if (killAt === 'quarantined' && report.quarantined > 0) die('quarantined', { cycle: report.cycleId });
    if (VALHALLA_TEST_UNTIL_DONE === '1') {
      checking = checking.then(async () => {
        if (!(await workLeft())) stop.abort();
      });
    }
  },
  // The until-done check runs between cycles: the next one starts only once it has answered.
  beforeCycle: () => checking,
});
// The until-done check of the last cycle may still be reading: the database stays open until it has.
await checking;
await client.close();
await app.close();
