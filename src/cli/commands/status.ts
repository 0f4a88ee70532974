import type { Command } from 'commander';
import type { Context } from '../context.js';
import { formatTable, writeJson, writeLine } from '../output.js';

export function registerStatus(program: Command, ctx: Context): void {
  program
    .command('status')
    .description('phase, leads per state, ingest totals and the audit chain length')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const { io } = ctx;
      await ctx.withApp(async (app) => {
        const report = await app.status();
        if (opts.json) return writeJson(io.stdout, report);
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
      });
    });
}
