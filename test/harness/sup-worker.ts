/**
 * A stand-in worker for the supervisor's tests: it speaks the worker's IPC protocol (heartbeats with
 * its RSS) and then behaves as told, so each supervision rule can be met on purpose:
 *
 *   node dist-test/test/harness/sup-worker.js <beatMs> steady            beat until SIGTERM
 *   node dist-test/test/harness/sup-worker.js <beatMs> grow <mb>         allocate and touch <mb> MB, keep beating
 *   node dist-test/test/harness/sup-worker.js <beatMs> crash <afterMs>   exit 1 after <afterMs>
 *   node dist-test/test/harness/sup-worker.js <beatMs> finish <beats>    exit 0 after <beats> beats
 *   node dist-test/test/harness/sup-worker.js <beatMs> lock <sqlite file> take the database's write lock
 *                                                                   after 300 ms and hold it, beating
 *
 * Not part of the product: the real worker is `valhalla worker`.
 */
import Database from 'better-sqlite3';

const [beatArg, behaviour = 'steady', param = '0'] = process.argv.slice(2);
const beatMs = Number(beatArg ?? 100);
let beats = 0;
const held: Buffer[] = [];

function beat() {
  beats++;
  const memory = process.memoryUsage();
  process.send?.({
    type: 'heartbeat',
    at: Date.now(),
    rssBytes: memory.rss,
    heapUsedBytes: memory.heapUsed,
    state: 'idle',
    cycleId: null,
  });
  if (behaviour === 'finish' && beats >= Number(param)) {
    clearInterval(timer);
    process.disconnect?.();
    process.exitCode = 0;
  }
}

const timer = setInterval(beat, beatMs);
beat();
process.on('SIGTERM', () => {
  clearInterval(timer);
  process.stdout.write(`sup-worker ${process.pid}: SIGTERM\n`);
  process.disconnect?.();
});
if (behaviour === 'grow') {
  // Touched pages count in RSS: fill them.
  for (let i = 0; i < Number(param); i++) held.push(Buffer.alloc(1024 * 1024, 1));
}
if (behaviour === 'lock') {
  // As a worker frozen in the middle of a transaction would: the write lock held, never released.
  setTimeout(() => {
    const db = new Database(param, { fileMustExist: true });
    db.exec('begin immediate');
    process.stdout.write(`sup-worker ${process.pid}: holding the write lock\n`);
  }, 300);
}
if (behaviour === 'crash') setTimeout(() => process.exit(1), Number(param));
