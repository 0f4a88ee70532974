import type { Command } from 'commander';
import { alertView } from '../../views/index.js';
import { wholeNumber } from '../arguments.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, formatTable, writeJson, writeLine } from '../output.js';

const MESSAGE_COLUMN_CHARS = 80;

export function registerAlerts(program: Command, ctx: Context): void {
  const alerts = program.command('alerts').description('ops alerts: Slack and e-mail (gate 5)');

  alerts
    .command('test')
    .description('send a test alert to every configured channel now (recorded and audited)')
    .action(async () => {
      await ctx.withApp(async (app) => {
        const results = await app.sendTestAlert();
        if (results.length === 0) {
          throw new CliExit(
            EXIT.refused,
            'no alert channel is configured: set VALHALLA_SLACK_WEBHOOK_URL, or VALHALLA_SMTP_URL and VALHALLA_ALERT_EMAIL_TO',
          );
        }
        for (const r of results) {
          const outcome = r.ok ? 'ok' : `failed: ${r.error ?? 'not delivered'}`;
          writeLine(ctx.io.stdout, `${r.channel.padEnd(5)}  ${outcome}  (${r.ms} ms)`);
        }
        const failed = results.filter((r) => !r.ok).map((r) => r.channel);
        if (failed.length > 0) {
          throw new CliExit(EXIT.failure, `the test alert did not reach: ${failed.join(', ')}`);
        }
      });
    });

  alerts
    .command('list')
    .description('recent alerts, newest first, with each channel’s delivery state')
    .option('--limit <n>', 'how many (1-1000)', wholeNumber(1, 1000), 20)
    .option('--json', 'print as JSON')
    .action(async (opts: { limit: number; json?: boolean }) => {
      await ctx.withApp(async (app) => {
        const rows = await app.recentAlerts(opts.limit);
        if (opts.json) {
          return writeJson(ctx.io.stdout, {
            alerts: rows.map(alertView),
          });
        }
        if (rows.length === 0) return writeLine(ctx.io.stdout, 'no alerts recorded');
        writeLine(
          ctx.io.stdout,
          formatTable(
            ['ID', 'TIME', 'SEVERITY', 'KIND', 'EVENT', 'REPEATS', 'DELIVERY', 'MESSAGE'],
            rows.map((a) => [
              a.id,
              new Date(a.at).toISOString(),
              a.severity,
              a.kind,
              a.event,
              a.repeats,
              a.deliveries.length === 0
                ? '(no channel)'
                : a.deliveries.map((d) => `${d.channel}:${deliveryState(d.state, d.attempts)}`).join(' '),
              shorten(a.message.replace(/\s+/g, ' '), MESSAGE_COLUMN_CHARS),
            ]),
          ),
        );
      });
    });
}

/** `sent`, `failed`, or `pending` with the attempts made so far when it has been tried. */
function deliveryState(state: string, attempts: number): string {
  return state === 'pending' && attempts > 0 ? `pending(${attempts} tried)` : state;
}

function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
