import { type Command, Option } from 'commander';
import { runSupervisor, runWorker } from '../../app/index.js';
import type { HeartbeatMessage } from '../../monitor/index.js';
import { startServer } from '../../server/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeLine } from '../output.js';
import { wholeNumber } from './leads.js';

/** A request still in flight this long after SIGTERM is cut and parked (resent with its key on restart). */
const SHUTDOWN_GRACE_MS = 25_000;

/** SIGTERM/SIGINT (and, for the worker, losing its supervisor) → `stop`; after the grace → `abortRequests`. */
function shutdownSignals(ctx: Context, what: string, alsoOnDisconnect: boolean) {
  const stop = new AbortController();
  const abortRequests = new AbortController();
  const onSignal = (name: string) => {
    if (stop.signal.aborted) return;
    writeLine(
      ctx.io.stderr,
      `${name}: ${what}finishing the current work (at most ${SHUTDOWN_GRACE_MS / 1000} s), claiming nothing new`,
    );
    stop.abort();
    setTimeout(() => abortRequests.abort(), SHUTDOWN_GRACE_MS).unref();
  };
  const handlers = {
    SIGTERM: () => onSignal('SIGTERM'),
    SIGINT: () => onSignal('SIGINT'),
    disconnect: () => onSignal('supervisor gone'),
  };
  process.on('SIGTERM', handlers.SIGTERM);
  process.on('SIGINT', handlers.SIGINT);
  if (alsoOnDisconnect) process.on('disconnect', handlers.disconnect);
  return {
    stop: stop.signal,
    abortRequests: abortRequests.signal,
    release() {
      process.off('SIGTERM', handlers.SIGTERM);
      process.off('SIGINT', handlers.SIGINT);
      process.off('disconnect', handlers.disconnect);
    },
  };
}

/**
 * A heartbeat to the supervisor. Once the channel is closed (the supervisor is gone) it is dropped:
 * the worker is draining then, and an unhandled IPC error would kill it mid-drain.
 */
function sendToSupervisor(message: HeartbeatMessage): void {
  if (!process.connected || !process.send) return;
  process.send(message, undefined, {}, () => undefined);
}

export { shutdownSignals };

export function registerRun(program: Command, ctx: Context): void {
  program
    .command('run')
    .description(
      'run the service: a supervisor and its worker; Phase 3 records dry runs, Phase 4 sends only through every gate',
    )
    // Both at once is ambiguous (one cycle, or n?): a usage error rather than a silent choice.
    .addOption(new Option('--once', 'run one cycle and exit').conflicts('cycles'))
    .option('--cycles <n>', 'run this many cycles and exit', wholeNumber(1, 1_000_000))
    .action(async (opts: { once?: boolean; cycles?: number }) => {
      const { io } = ctx;
      const config = ctx.config();
      await ctx.withApp(async (app) => {
        const maxCycles = opts.once ? 1 : opts.cycles;
        const signals = shutdownSignals(ctx, 'stopping the worker, ', false);
        try {
          if (config.phase === 3 || (await app.gates.check()).cleared) {
            writeLine(
              io.stdout,
              `valhalla run: Phase ${config.phase} (${config.phase === 3 ? 'DRY-RUN: nothing is sent' : 'LIVE'}), a cycle every ${config.cycleIntervalSeconds} s; worker heap limit ${config.policy.memoryPerProcessMb} MB, heartbeat every ${config.policy.heartbeatIntervalSeconds} s`,
            );
          }
          const result = await runSupervisor(app, {
            stop: signals.stop,
            workerArgs: maxCycles === undefined ? [] : ['--cycles', String(maxCycles)],
            serve: (metrics) => startServer({ app, metrics }),
            stdout: io.stdout,
            stderr: io.stderr,
            print: (line) => writeLine(io.stdout, line),
          });
          if (result.code === 3)
            throw new CliExit(
              EXIT.refused,
              `Phase 4 refused: ${'reason' in result ? result.reason : 'the worker refused to start'}`,
            );
          if (result.code !== 0)
            throw new CliExit(EXIT.failure, `the worker stopped with exit code ${result.code}`);
        } finally {
          signals.release();
        }
      });
    });

  program
    .command('worker', { hidden: true })
    .description('the worker process that `valhalla run` supervises (not for direct use)')
    .option('--cycles <n>', 'run this many cycles and exit', wholeNumber(1, 1_000_000))
    .action(async (opts: { cycles?: number }) => {
      await ctx.withApp(async (app) => {
        const signals = shutdownSignals(ctx, '', true);
        try {
          const result = await runWorker(app, {
            stop: signals.stop,
            abortRequests: signals.abortRequests,
            maxCycles: opts.cycles,
            // A limit lowered in `.env` (or the policy file) is taken at the next cycle, no restart.
            reloadConfig: () => ctx.freshConfig(),
            // A cycle stuck after its term ended: exit for the supervisor to start a fresh worker.
            exitStuck: () => process.exit(1),
            send: process.send ? sendToSupervisor : undefined,
            print: (line) => writeLine(ctx.io.stdout, line),
          });
          if (result.code === 3) throw new CliExit(EXIT.refused, `Phase 4 refused: ${result.reason}`);
        } finally {
          signals.release();
          // The IPC channel would keep this process alive after its work is done.
          if (process.connected) process.disconnect();
        }
      });
    });
}
