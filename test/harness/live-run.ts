/**
 * `valhalla run` in Phase 4 for the supervision tests: the real supervisor and the real worker
 * (src/app/run.ts), configured from the environment, with one difference: the gate clearance is
 * given (the gates module does not clear anything yet), and the go-live time is set far enough
 * back that the ramp is at its last stage. Not part of the product.
 *
 *   node dist-test/test/harness/live-run.js            the supervisor (forks this file with `worker`)
 *   node dist-test/test/harness/live-run.js worker     the worker
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { openApp } from '../../src/app/index.js';
import { runSupervisor, runWorker } from '../../src/app/run.js';
import { loadConfig } from '../../src/config/index.js';
import { readGoLiveAt, writeGoLiveAt } from '../../src/guard/index.js';
import { startServer } from '../../src/server/index.js';
import { CLEARED, DAY } from '../support/world.js';

const gates = CLEARED;
const app = await openApp({ config: loadConfig({ env: process.env, cwd: process.cwd() }) });
const stop = new AbortController();
const abortRequests = new AbortController();
process.once('SIGTERM', () => {
  stop.abort();
  setTimeout(() => abortRequests.abort(), 5_000).unref();
});
const print = (line: string) => process.stdout.write(`${line}\n`);
if (process.argv[2] === 'worker') {
  if ((await readGoLiveAt(app.store.db)) === null) {
    await writeGoLiveAt(app.store.db, app.clock.now() - 7 * DAY);
  }
  process.once('disconnect', () => stop.abort());
  await runWorker(app, {
    stop: stop.signal,
    abortRequests: abortRequests.signal,
    gates,
    send: (message) => {
      if (process.connected) process.send?.(message, undefined, {}, () => undefined);
    },
    print,
  });
  if (process.connected) process.disconnect();
} else {
  const self = fileURLToPath(import.meta.url);
  const result = await runSupervisor(app, {
    stop: stop.signal,
    workerArgs: [],
    gates,
    // The dashboard as `valhalla run` serves it, on VALHALLA_SERVER_PORT (testEnv: 0, a free port).
    serve: (metrics) => startServer({ app, metrics }),
    spawnWorker: (execArgv) =>
      fork(self, ['worker'], { execArgv, env: process.env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }),
    stdout: process.stdout,
    stderr: process.stderr,
    print,
  });
  process.exitCode = result.code;
}
await app.close();
