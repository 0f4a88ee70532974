/**
 * bench/rollback: the time from a rollback trigger to the start of the last partner request, over
 * repeated trials. Each trial is a full rollback drill (`valhalla drill rollback`'s code): a private
 * SQLite database, the real engine and partner client sending to the in-process sandbox partner as
 * fast as the policy allows (5 requests/s), and a rollback committed from outside the worker at a
 * random moment, as `valhalla rollback` would. The partner timestamps every request it receives.
 *
 * The raw baseline, measured in the same run: a hand-written loop with the same design and none of
 * the product (a flag row in SQLite polled every 100 ms, a request started every 200 ms to the same
 * sandbox), stopped the same way. The ratio compares the product's stop latency with it.
 *
 *   npm run bench:rollback -- [--trials 10]
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Agent, request } from 'undici';
import { DEFAULT_POLICY_FILE, loadConfig } from '../src/config/index.js';
import { runRollbackDrill } from '../src/rehearsal/drill.js';
import { startSandboxPartner } from '../src/sandbox/index.js';
import { arg } from './support.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quantile = (xs: number[], q: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
};

/** The baseline: poll a flag row every 100 ms, start a request every 200 ms until the flag is seen. */
async function rawTrial(triggerDelayMs: number): Promise<{ lastAfterTriggerMs: number; after: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-bench-raw-'));
  const sandbox = await startSandboxPartner({ certDir: join(dir, 'cert'), faults: { latencyMs: 20 } });
  const agent = new Agent({ connect: { ca: sandbox.caPem ?? undefined, minVersion: 'TLSv1.2' } });
  const db = new SqliteDatabase(join(dir, 'flag.db'));
  db.pragma('journal_mode = WAL');
  db.exec("create table flag (v text); insert into flag values ('live')");
  const writer = new SqliteDatabase(join(dir, 'flag.db'));
  let stopped = false;
  const poll = setInterval(() => {
    if ((db.prepare('select v from flag').get() as { v: string }).v !== 'live') stopped = true;
  }, 100);
  const loop = (async () => {
    while (!stopped) {
      await request(`${sandbox.url}/health`, { dispatcher: agent }).then((r) => r.body.dump());
      await sleep(200);
    }
  })();
  await sleep(600 + triggerDelayMs);
  const triggeredAt = Date.now();
  writer.prepare("update flag set v = 'rolled_back'").run();
  await sleep(1_000);
  await loop;
  clearInterval(poll);
  const after = sandbox.stats().requestStarts.filter((t) => t >= triggeredAt);
  writer.close();
  db.close();
  await agent.close();
  await sandbox.close();
  rmSync(dir, { recursive: true, force: true });
  return {
    lastAfterTriggerMs: after.length === 0 ? 0 : Math.max(...after) - triggeredAt,
    after: after.length,
  };
}

async function main() {
  const trials = arg('--trials', 10);
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-bench-rollback-'));
  const config = loadConfig({
    cwd: dir,
    env: {
      VALHALLA_POLICY_FILE: DEFAULT_POLICY_FILE,
      VALHALLA_PSEUDONYM_SECRET: 'b'.repeat(64),
      VALHALLA_OPERATOR: 'bench',
    },
  });
  const product: number[] = [];
  const held: number[] = [];
  const raw: number[] = [];
  let startedAfter = 0;
  let rawAfter = 0;
  let failed = 0;
  console.log(`bench/rollback: ${trials} trials of each`);
  for (let t = 0; t < trials; t++) {
    const delay = randomInt(0, 400);
    const drill = await runRollbackDrill({ config, leads: 400, triggerDelayMs: delay, observeMs: 1_000 });
    product.push(drill.lastRequestAfterTriggerMs);
    held.push(drill.triggerToHoldMs ?? Number.POSITIVE_INFINITY);
    startedAfter += drill.requestsAfterTrigger;
    if (!drill.passed) failed++;
    const baseline = await rawTrial(delay);
    raw.push(baseline.lastAfterTriggerMs);
    rawAfter += baseline.after;
    console.log(
      `  trial ${t + 1}: valhalla ${drill.lastRequestAfterTriggerMs} ms (${drill.requestsAfterTrigger} started after, rollback committed in ${drill.triggerToModeMs} ms, worker held new requests after ${drill.triggerToHoldMs} ms, drill ${drill.passed ? 'passed' : 'FAILED'}); raw ${baseline.lastAfterTriggerMs} ms (${baseline.after} after)`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
  const row = (name: string, xs: number[], n: number) =>
    `${name.padEnd(9)} median ${quantile(xs, 0.5)} ms, p90 ${quantile(xs, 0.9)} ms, max ${Math.max(...xs)} ms; requests started after the trigger: ${n}`;
  console.log('time from the rollback trigger to the last request start (0: none started after it)');
  console.log(row('valhalla', product, startedAfter));
  console.log(row('raw', raw, rawAfter));
  console.log(
    `valhalla: trigger → worker holding new requests: median ${quantile(held, 0.5)} ms, max ${Math.max(...held)} ms (the mode watch polls every 100 ms)`,
  );
  const rawMax = Math.max(...raw);
  console.log(
    `ratio of the maxima (valhalla / raw): ${rawMax === 0 ? 'n/a (raw 0 ms)' : (Math.max(...product) / rawMax).toFixed(2)}`,
  );
  const worst = Math.max(...product, ...held);
  console.log(
    `aim ≤ 100 ms: ${worst <= 100 ? 'met' : 'NOT met'} (worst ${worst} ms); drills failed: ${failed}`,
  );
}

await main();
