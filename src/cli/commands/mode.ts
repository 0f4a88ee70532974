import { type Command, Option } from 'commander';
import { type App, describeModeAck, MODE_ACK_WAIT_MS } from '../../app/index.js';
import { REASON_WITHHELD } from '../../pii/index.js';
import type { ModeCommand } from '../../policy/index.js';
import { rehearseRollbackDrill } from '../../rehearsal/index.js';
import { wholeNumber } from '../arguments.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';

interface ModeOptions {
  reason: string;
  wait: number;
  json?: boolean;
}

/** Alerts raised by a mode change go out now, even with no `valhalla run` to send them; bounded. */
const ALERT_SEND_BUDGET_MS = 15_000;

async function applyMode(
  ctx: Context,
  command: ModeCommand,
  reason: string,
  opts: { wait: number; json?: boolean },
): Promise<void> {
  await ctx.withApp(
    async (app: App) => {
      const change = await app.changeMode(command, { reason });
      if (change.kind === 'refused') throw new CliExit(EXIT.refused, `${command} refused: ${change.reason}`);
      // The change (or the one already in force) and whether the running service took it.
      const ack = await app.awaitModeAck({
        ...(change.kind === 'change' && change.changeSeq !== undefined
          ? { changeSeq: change.changeSeq }
          : {}),
        waitMs: opts.wait * 1000,
      });
      const out = ctx.io.stdout;
      if (opts.json) writeJson(out, { change, acknowledgement: ack });
      else if (change.kind === 'unchanged') {
        writeLine(out, `mode unchanged (${change.mode}): ${change.reason}`);
        writeLine(out, describeModeAck(ack));
      } else {
        writeLine(
          out,
          `mode ${change.from} → ${change.to} by ${app.config.operator} (audited): ${change.reasonWithheld ? REASON_WITHHELD : reason}`,
        );
        writeLine(out, describeModeAck(ack));
        if (change.to === 'rolled_back' && ack.kind === 'acknowledged') {
          writeLine(
            out,
            'outbound stopped: the running worker starts no new request; one already in flight finishes and is recorded; the queue is kept and the worker continues as a dry run',
          );
        }
      }
      let timer: NodeJS.Timeout | undefined;
      const sent =
        change.kind === 'change'
          ? await Promise.race([
              app.dispatchAlerts(),
              new Promise<null>((resolve) => {
                timer = setTimeout(() => resolve(null), ALERT_SEND_BUDGET_MS);
              }),
            ]).finally(() => clearTimeout(timer))
          : null;
      if (!opts.json && sent && sent.sent + sent.retrying + sent.failed > 0) {
        writeLine(out, `alerts: ${sent.sent} sent, ${sent.retrying} to retry, ${sent.failed} failed`);
      }
      // The reason was not kept (it looked like contact data): said on standard error, and in --json's
      // `change.reasonWithheld`. Not an exit code of its own: a stop was made, and its exit code must
      // say what an automation needs first, whether the running service confirmed it (never 3, refused).
      const withheld =
        change.kind === 'change' && change.reasonWithheld
          ? `${change.reasonWithheld}; the ${command} itself was made`
          : null;
      if (withheld && !opts.json) writeLine(ctx.io.stderr, `note: ${withheld}`);
      // A rollback's exit code says whether the running service confirmed it (README: Modes).
      if (command === 'rollback' && ack.kind === 'no_worker') {
        throw new CliExit(
          EXIT.unconfirmed,
          'rollback recorded, not confirmed: no worker of this installation is running',
        );
      }
      if (command === 'rollback' && ack.kind === 'not_acknowledged') {
        throw new CliExit(
          EXIT.failure,
          'rollback recorded, NOT confirmed by the running worker: it may still be sending; check the service',
        );
      }
      // A stop is never held up by this process's settings (a dedup rule set for another command).
    },
    { stopOnly: command === 'pause' || command === 'rollback' },
  );
}

/** `--wait S`: how long a mode command waits for the running workers' acknowledgement. */
function waitOption(): Option {
  return new Option('--wait <seconds>', 'how long to wait for the running worker to acknowledge the change')
    .argParser(wholeNumber(0, 600))
    .default(MODE_ACK_WAIT_MS / 1000);
}

export function registerMode(program: Command, ctx: Context): void {
  program
    .command('pause')
    .description('pause outbound (Phase 4): nothing is claimed or sent; the queue is kept')
    .option('--reason <text>', 'why (audited)', 'paused by an operator')
    .addOption(waitOption())
    .option('--json', 'print the change and its acknowledgement as JSON')
    .action((opts: ModeOptions) => applyMode(ctx, 'pause', opts.reason, opts));
  program
    .command('resume')
    .description('resume after a pause (not after a rollback: see rearm)')
    .option('--reason <text>', 'why (audited)', 'resumed by an operator')
    .addOption(waitOption())
    .option('--json', 'print the change and its acknowledgement as JSON')
    .action((opts: ModeOptions) => applyMode(ctx, 'resume', opts.reason, opts));
  program
    .command('rollback')
    .description(
      'roll back to DRY-RUN now, the queue kept; reports whether the running worker acknowledged it. Exit 0 confirmed by the running worker, 4 recorded but no worker running, 1 a running worker did not confirm within --wait',
    )
    .requiredOption('--reason <text>', 'why (audited, and in the alert)')
    .addOption(waitOption())
    .option('--json', 'print the change and its acknowledgement as JSON')
    .action((opts: ModeOptions) => applyMode(ctx, 'rollback', opts.reason, opts));
  program
    .command('rearm')
    .description(
      're-arm after a rollback: Phase 4, the gates verified, and the worker restarted since the rollback',
    )
    .requiredOption('--reason <text>', 'what was fixed (audited)')
    .addOption(waitOption())
    .option('--json', 'print the change and its acknowledgement as JSON')
    .action((opts: ModeOptions) => applyMode(ctx, 'rearm', opts.reason, opts));

  const drill = program.command('drill').description('rehearsals whose results are gate evidence');
  drill
    .command('rollback')
    .description(
      'a timed rollback drill against an in-process sandbox partner, from a private database; recorded as gate 7 evidence',
    )
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean }) => {
      await ctx.withApp(async (app) => {
        const result = await rehearseRollbackDrill(app);
        if (opts.json) writeJson(ctx.io.stdout, result);
        else {
          writeLine(
            ctx.io.stdout,
            `rollback drill ${result.passed ? 'PASSED' : 'FAILED'} in ${(result.durationMs / 1000).toFixed(1)} s: rollback committed in ${result.triggerToModeMs} ms, worker held new requests after ${result.triggerToHoldMs ?? 'never'} ms, ${result.requestsAfterTrigger} request(s) started after it (last at +${result.lastRequestAfterTriggerMs} ms); ${result.exported} exported, ${result.keptInQueue} kept in the queue`,
          );
          writeLine(
            ctx.io.stdout,
            formatTable(
              ['check', 'result', 'detail'],
              result.checks.map((c) => [c.name, c.ok ? 'ok' : 'FAILED', c.detail]),
            ),
          );
          writeLine(ctx.io.stdout, 'recorded in the audit chain as drill.rollback (gate 7 evidence)');
        }
        if (!result.passed)
          throw new CliExit(EXIT.failure, 'the rollback drill failed: see the checks above');
      });
    });
}
