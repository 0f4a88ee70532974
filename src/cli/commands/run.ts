import { type Command, Option } from 'commander';
import { runSupervisor } from '../../app/index.js';
import { workerRestartRssBytes } from '../../policy/index.js';
import { wholeNumber } from '../arguments.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeLine } from '../output.js';
import { shutdownSignals } from '../signals.js';

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
              `valhalla run: Phase ${config.phase} (${config.phase === 3 ? 'DRY-RUN: nothing is sent' : 'LIVE'}), a cycle every ${config.cycleIntervalSeconds} s; memory per process ${config.policy.memoryPerProcessMb} MB (worker heap capped at it, restarted past ${Math.round(workerRestartRssBytes(config.policy.memoryPerProcessMb) / 1048576)} MB RSS), heartbeat every ${config.policy.heartbeatIntervalSeconds} s`,
            );
          }
          const result = await runSupervisor(app, {
            stop: signals.stop,
            workerArgs: maxCycles === undefined ? [] : ['--cycles', String(maxCycles)],
            // The dashboard's modules (fastify and its plugins) are loaded only when it is served.
            serve: async (metrics) => (await import('../../server/index.js')).startServer({ app, metrics }),
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
}
