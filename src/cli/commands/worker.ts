import { type Command, Option } from 'commander';
import { prepareSyntheticLeads, runWorker } from '../../app/index.js';
import type { HeartbeatMessage } from '../../monitor/index.js';
import { wholeNumber } from '../arguments.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeLine } from '../output.js';
import { shutdownSignals } from '../signals.js';

/**
 * A heartbeat to the supervisor. Once the channel is closed (the supervisor is gone) it is dropped:
 * the worker is draining then, and an unhandled IPC error would kill it mid-drain.
 */
function sendToSupervisor(message: HeartbeatMessage): void {
  if (!process.connected || !process.send) return;
  process.send(message, undefined, {}, () => undefined);
}

/** `valhalla worker`: the process `valhalla run` starts; a module of its own so it loads no dashboard. */
export function registerWorker(program: Command, ctx: Context): void {
  program
    .command('worker', { hidden: true })
    .description('the worker process that `valhalla run` supervises (not for direct use)')
    .option('--cycles <n>', 'run this many cycles and exit', wholeNumber(1, 1_000_000))
    .addOption(
      new Option(
        '--prepare-only',
        'load the synthetic leads of an empty Phase 3 store, then exit',
      ).hideHelp(),
    )
    .action(async (opts: { cycles?: number; prepareOnly?: boolean }) => {
      // The supervisor holds the loader to a start limit: say at once that it runs.
      if (opts.prepareOnly && process.connected && process.send) process.send({ type: 'preparing' });
      await ctx.withApp(async (app) => {
        if (opts.prepareOnly) {
          await prepareSyntheticLeads(app, (line) => writeLine(ctx.io.stdout, line));
          if (process.connected) process.disconnect();
          return;
        }
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
