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
        const { service } = run;
        // The running service's truth (its worker's heartbeat); this CLI's own configuration only
        // when no worker runs, and then said so.
        const phase = service.phase ?? report.phase;
        const policyHash = service.policyHash ?? report.policyHash;
        if (opts.json) {
          return writeJson(io.stdout, {
            ...report,
            phase,
            policyHash,
            localConfiguration: { phase: report.phase, policyHash: report.policyHash },
            run,
            gates: gatesSummary,
          });
        }
        const phaseWords = (p: 3 | 4) => `Phase ${p} (${p === 3 ? 'DRY-RUN' : 'LIVE'})`;
        if (service.running && service.worker) {
          const limits = service.limits
            ? `limits ${service.limits.leadsPerCycle} leads/cycle, ${service.limits.actionsPerCycle} actions/cycle, ${service.limits.rateLimitPerSecond} requests/s`
            : 'limits not reported';
          writeLine(
            io.stdout,
            `${phaseWords(service.phase ?? report.phase)}, mode ${service.mode ?? run.mode}, ${limits}, policy ${policyHash.slice(0, 16)}…: the running service (worker pid ${service.worker.pid}, heartbeat ${service.worker.ageSeconds} s ago) on ${report.database}`,
          );
          if (service.differences.length > 0) {
            writeLine(
              io.stdout,
              `Local configuration differs from the running service: ${service.differences.join('; ')} (it applies only when the service restarts)`,
            );
          }
        } else {
          writeLine(
            io.stdout,
            `No worker running (no heartbeat in the last ${app.config.policy.heartbeatIntervalSeconds + app.config.policy.heartbeatGraceSeconds} s): this CLI's configuration is ${phaseWords(report.phase)}, policy ${report.policyHash.slice(0, 16)}…; on ${report.database}`,
          );
        }
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
        // Phase 3 sends nothing whatever its mode: a mode of `live` there reads as what it is.
        writeLine(
          io.stdout,
          `Mode: ${phase === 3 && run.mode === 'live' ? 'DRY-RUN (Phase 3: nothing is sent)' : run.mode}`,
        );
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
