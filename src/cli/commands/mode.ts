import type { Command } from 'commander';
import { runRollbackDrill } from '../../app/drill.js';
import type { App } from '../../app/index.js';
import { REASON_WITHHELD } from '../../pii/index.js';
import type { ModeCommand } from '../../policy/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';

/** Alerts raised by a mode change go out now, even with no `valhalla run` to send them; bounded. */
const ALERT_SEND_BUDGET_MS = 15_000;

async function applyMode(ctx: Context, command: ModeCommand, reason: string): Promise<void> {
  await ctx.withApp(async (app: App) => {
    const change = await app.changeMode(command, { reason });
    if (change.kind === 'refused') throw new CliExit(EXIT.refused, `${command} refused: ${change.reason}`);
    if (change.kind === 'unchanged') {
      writeLine(ctx.io.stdout, `mode unchanged (${change.mode}): ${change.reason}`);
      return;
    }
    writeLine(
      ctx.io.stdout,
      `mode ${change.from} → ${change.to} by ${app.config.operator} (audited): ${change.reasonWithheld ? REASON_WITHHELD : reason}`,
    );
    if (change.to === 'rolled_back') {
      writeLine(
        ctx.io.stdout,
        'outbound stops within a second: a running worker starts no new request; one already in flight finishes and is recorded; the queue is kept and the worker continues as a dry run',
      );
    }
    let timer: NodeJS.Timeout | undefined;
    const sent = await Promise.race([
      app.dispatchAlerts(),
      new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), ALERT_SEND_BUDGET_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    if (sent && sent.sent + sent.retrying + sent.failed > 0) {
      writeLine(ctx.io.stdout, `alerts: ${sent.sent} sent, ${sent.retrying} to retry, ${sent.failed} failed`);
    }
    if (change.reasonWithheld) {
      throw new CliExit(EXIT.refused, `${change.reasonWithheld}; the ${command} itself was made`);
    }
  });
}

export function registerMode(program: Command, ctx: Context): void {
  program
    .command('pause')
    .description('pause outbound (Phase 4): nothing is claimed or sent; the queue is kept')
    .option('--reason <text>', 'why (audited)', 'paused by an operator')
    .action((opts: { reason: string }) => applyMode(ctx, 'pause', opts.reason));
  program
    .command('resume')
    .description('resume after a pause (not after a rollback: see rearm)')
    .option('--reason <text>', 'why (audited)', 'resumed by an operator')
    .action((opts: { reason: string }) => applyMode(ctx, 'resume', opts.reason));
  program
    .command('rollback')
    .description('roll back to DRY-RUN now: outbound stops within a second, the queue is kept')
    .requiredOption('--reason <text>', 'why (audited, and in the alert)')
    .action((opts: { reason: string }) => applyMode(ctx, 'rollback', opts.reason));
  program
    .command('rearm')
    .description(
      're-arm after a rollback: Phase 4, the gates verified, and the worker restarted since the rollback',
    )
    .requiredOption('--reason <text>', 'what was fixed (audited)')
    .action((opts: { reason: string }) => applyMode(ctx, 'rearm', opts.reason));

  const drill = program.command('drill').description('rehearsals whose results are gate evidence');
  drill
    .command('rollback')
    .description(
      'a timed rollback drill against an in-process sandbox partner, from a private database; recorded as gate 7 evidence',
    )
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean }) => {
      await ctx.withApp(async (app) => {
        const result = await runRollbackDrill({ config: app.config });
        await app.audit.record({
          actor: app.config.operator,
          action: 'drill.rollback',
          details: { ...result },
        });
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
