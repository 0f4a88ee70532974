import { type Command, Option } from 'commander';
import { systemSleep } from '../../clock/index.js';
import { describeCycle, runCycles } from '../../engine/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeLine } from '../output.js';
import { wholeNumber } from './leads.js';

/** A request still in flight this long after SIGTERM is cut and parked (resent with its key on restart). */
const SHUTDOWN_GRACE_MS = 25_000;
/** Synthetic leads loaded into an empty store in Phase 3 with real data off. */
const SYNTHETIC_LEADS = 5_000;

export function registerRun(program: Command, ctx: Context): void {
  program
    .command('run')
    .description('run the cycle engine: Phase 3 records dry runs; Phase 4 sends, only through every gate')
    // Both at once is ambiguous (one cycle, or n?): a usage error rather than a silent choice.
    .addOption(new Option('--once', 'run one cycle and exit').conflicts('cycles'))
    .option('--cycles <n>', 'run this many cycles and exit', wholeNumber(1, 1_000_000))
    .action(async (opts: { once?: boolean; cycles?: number }) => {
      const { io } = ctx;
      const config = ctx.config();
      await ctx.withApp(async (app) => {
        if (config.phase === 4) {
          // The gates module decides; until it exists nothing is cleared, and there is no bypass.
          const clearance = await app.gates.check();
          await app.audit.record({
            actor: config.operator,
            action: 'run.refused',
            details: { phase: 4, reason: clearance.reason },
          });
          throw new CliExit(EXIT.refused, `Phase 4 refused: ${clearance.reason}`);
        }
        const loaded = await app.loadSyntheticLeadsIfEmpty(SYNTHETIC_LEADS);
        if (loaded) {
          writeLine(
            io.stdout,
            `empty store, VALHALLA_REAL_DATA_INGEST=0: loaded ${loaded.read} synthetic leads (accepted ${loaded.accepted}, duplicate ${loaded.duplicate}, rejected ${loaded.rejected})`,
          );
        }
        const stop = new AbortController();
        const abortRequests = new AbortController();
        const onSignal = (name: string) => {
          if (stop.signal.aborted) return;
          writeLine(
            io.stderr,
            `${name}: finishing the current work (at most ${SHUTDOWN_GRACE_MS / 1000} s), claiming nothing new`,
          );
          stop.abort();
          setTimeout(() => abortRequests.abort(), SHUTDOWN_GRACE_MS).unref();
        };
        const sigterm = () => onSignal('SIGTERM');
        const sigint = () => onSignal('SIGINT');
        process.on('SIGTERM', sigterm);
        process.on('SIGINT', sigint);
        try {
          writeLine(
            io.stdout,
            `valhalla run: Phase ${config.phase} (${config.phase === 3 ? 'DRY-RUN: nothing is sent' : 'LIVE'}), a cycle every ${config.cycleIntervalSeconds} s`,
          );
          const maxCycles = opts.once ? 1 : opts.cycles;
          await runCycles({
            engine: app.engine(),
            clock: app.clock,
            sleep: systemSleep,
            logger: app.logger,
            intervalMs: config.cycleIntervalSeconds * 1000,
            ...(maxCycles !== undefined ? { maxCycles } : {}),
            signal: stop.signal,
            abortRequests: abortRequests.signal,
            onCycle: (report) => writeLine(io.stdout, describeCycle(report)),
          });
        } finally {
          process.off('SIGTERM', sigterm);
          process.off('SIGINT', sigint);
        }
      });
    });
}
