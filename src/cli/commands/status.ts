import type { Command } from 'commander';
import type { Context } from '../context.js';
import { formatTable, writeJson, writeLine } from '../output.js';

export function registerStatus(program: Command, ctx: Context): void {
  program
    .command('status')
    .description(
      'phase, mode, ramp stage, leads per state, ingest totals, the audit chain and the last cycles',
    )
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const { io } = ctx;
      await ctx.withApp(async (app) => {
        const report = await app.status();
        const run = await app.runState();
        const gates = await app.gatesReport();
        const gatesSummary = { cleared: gates.cleared, missing: gates.missing.length };
        if (opts.json) return writeJson(io.stdout, { ...report, run, gates: gatesSummary });
        writeLine(
          io.stdout,
          `Phase ${report.phase} (${report.phase === 3 ? 'DRY-RUN' : 'LIVE'}) on ${report.database}; policy ${report.policyHash.slice(0, 16)}…`,
        );
        writeLine(io.stdout);
        const { total, ...states } = report.leads;
        writeLine(
          io.stdout,
          formatTable(
            ['STATE', 'LEADS'],
            [...Object.entries(states).map(([k, v]) => [k, v]), ['total', total]],
          ),
        );
        writeLine(io.stdout);
        const i = report.ingest;
        writeLine(
          io.stdout,
          `Ingest: ${i.runs} runs, ${i.read} rows read: ${i.accepted} accepted, ${i.duplicate} duplicate, ${i.rejected} rejected`,
        );
        writeLine(io.stdout, `Audit chain: ${report.auditEntries} entries`);
        writeLine(io.stdout, `Mode: ${run.mode}`);
        writeLine(
          io.stdout,
          gates.cleared
            ? 'Gates: all nine green, activated by the CEO'
            : `Gates: not cleared, ${gates.missing.length} item(s) missing (valhalla gates status)`,
        );
        writeLine(
          io.stdout,
          run.heartbeat === null
            ? 'Heartbeat: none recorded (no worker has run)'
            : `Heartbeat: ${run.heartbeat.ageSeconds} s ago (${run.heartbeat.at}), worker pid ${run.heartbeat.pid}, ${run.heartbeat.rssMb} MB RSS, ${run.heartbeat.state}`,
        );
        const leader = run.leader;
        writeLine(
          io.stdout,
          leader === null
            ? 'Leader: none yet (no runner has run)'
            : `Leader: ${leader.holder} (pid ${leader.pid} on ${leader.host}), epoch ${leader.epoch}, ` +
                (leader.lease === 'held'
                  ? `lease held for ${leader.seconds} s more`
                  : leader.lease === 'lapsed'
                    ? `lease LAPSED ${leader.seconds} s ago: a standby takes over`
                    : 'lease released (stopped cleanly)'),
        );
        writeLine(
          io.stdout,
          `Error rate: ${run.errorRate.failures}/${run.errorRate.requests} requests failed in the window; ${run.errorRate.rollback ? 'ROLLBACK' : 'no rollback'} (${run.errorRate.reason})`,
        );
        writeLine(
          io.stdout,
          run.ramp === null
            ? 'Ramp: not live (Phase 3 dry run)'
            : `Ramp: stage ${run.ramp.stage}, ceiling ${run.ramp.ceiling} leads/cycle${run.ramp.confirmEachCycle ? ', each cycle confirmed by an operator' : ''}; ` +
                `go-live ${run.goLiveAt ?? 'not yet'}${run.ramp.nextStageAt ? `, next stage ${run.ramp.nextStageAt}` : ''}`,
        );
        for (const c of run.lastCycles) {
          writeLine(
            io.stdout,
            `  cycle ${c.id} [${c.kind}] ${c.startedAt}: ${c.kind === 'dry_run' ? 'dry-run' : 'claimed'} ${c.leads}, actions ${c.actions}${c.kind === 'live' ? (c.confirmed ? ', confirmed' : ', not confirmed') : ''}`,
          );
        }
      });
    });
}
