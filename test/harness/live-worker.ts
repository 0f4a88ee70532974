/**
 * A Phase 4 worker for the crash and fault tests: the real app, engine, guard, partner client and
 * store, configured from the environment like `valhalla run`, with one difference: the gate
 * clearance is given (the tests exercise sending, not the gates), and the go-live time is set far
 * enough back that the ramp is at its last stage unless VALHALLA_TEST_GO_LIVE_AT says otherwise.
 * Not part of the product: `valhalla run` in Phase 4 refuses without the gates.
 *
 *   node dist-test/test/harness/live-worker.js [cycles]
 */
import { openApp } from '../../src/app/index.js';
import { systemSleep } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { runCycles } from '../../src/engine/index.js';
import { readGoLiveAt, writeGoLiveAt } from '../../src/guard/index.js';
import { CLEARED, DAY } from '../support/world.js';

const cycles = process.argv[2] ? Number(process.argv[2]) : undefined;
// The harness's own VALHALLA_TEST_* settings are not the product's: loadConfig refuses unknown
// VALHALLA_* names as likely typos, so they are read here and kept out of the product's environment.
const { VALHALLA_TEST_INTERVAL_MS, VALHALLA_TEST_GO_LIVE_AT, ...productEnv } = process.env;
const app = await openApp({ config: loadConfig({ env: productEnv, cwd: process.cwd() }) });
if ((await readGoLiveAt(app.store.db)) === null) {
  const goLiveAt = VALHALLA_TEST_GO_LIVE_AT ? Number(VALHALLA_TEST_GO_LIVE_AT) : app.clock.now() - 7 * DAY;
  await writeGoLiveAt(app.store.db, goLiveAt);
}
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
const engine = app.engine({ gates: CLEARED });
await runCycles({
  engine,
  clock: app.clock,
  sleep: systemSleep,
  logger: app.logger,
  intervalMs: Number(VALHALLA_TEST_INTERVAL_MS ?? 20),
  ...(cycles !== undefined ? { maxCycles: cycles } : {}),
  signal: stop.signal,
  onCycle: (report) => process.stdout.write(`${JSON.stringify(report)}\n`),
});
await app.close();
