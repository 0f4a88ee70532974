import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { createPrivateWriteStream, PRIVATE_DIR_MODE } from '../../files/index.js';
import type { SourceFormat } from '../../ingest/index.js';
import { refuseContactData } from '../../pii/index.js';
import { LEAD_STATES, type LeadState } from '../../policy/index.js';
import { type ErasedLead, eraseLead, type LeadIdentifier, parseLeadIdentifier } from '../../privacy/index.js';
import { escapeText } from '../../text/index.js';
import { wholeNumber } from '../arguments.js';
import type { Context } from '../context.js';
import { CliExit, type CliIo, EXIT, formatLeadTable, writeJson, writeLine } from '../output.js';

function instant(value: string): number {
  const ms = Date.parse(value);
  if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}/.test(value))
    throw new InvalidArgumentError(`not an ISO 8601 date-time: ${value}`);
  return ms;
}

export function registerLeads(program: Command, ctx: Context): void {
  const leads = program
    .command('leads')
    .description("generate synthetic leads, list stored ones (masked), or erase a person's data");

  leads
    .command('generate')
    .description(
      'write realistic, reproducible synthetic leads (with stale, low-score, duplicate and invalid rows)',
    )
    .requiredOption('--count <n>', 'how many rows', wholeNumber(1, 100_000_000))
    .option(
      '--seed <s>',
      'the random seed: the same seed and --now give the same file',
      wholeNumber(0, 2 ** 31 - 1),
      1,
    )
    .addOption(new Option('--format <format>', 'csv or jsonl').choices(['csv', 'jsonl']).default('csv'))
    .option('--out <file>', 'write to a file (mode 0600) instead of standard output')
    .option('--force', 'replace the file if it exists (a symbolic link is always refused)')
    .option('--now <iso>', 'the instant the timestamps are relative to (default: now)', instant)
    .action(
      async (opts: {
        count: number;
        seed: number;
        format: SourceFormat;
        out?: string;
        force?: boolean;
        now?: number;
      }) => {
        const { io } = ctx;
        const config = ctx.config();
        if (config.realDataIngest) {
          writeLine(
            io.stderr,
            'note: VALHALLA_REAL_DATA_INGEST=1: synthetic leads are for Phase 3 demos and tests; do not ingest them into a live store',
          );
        }
        // Relative to the CLI's working folder (not this process's: the CLI may run embedded).
        const outPath = opts.out ? resolve(io.cwd, opts.out) : null;
        // The folder first: the stream opens the file on the next tick.
        if (outPath) await mkdir(dirname(outPath), { recursive: true, mode: PRIVATE_DIR_MODE });
        const out = outPath
          ? createPrivateWriteStream(outPath, { overwrite: opts.force === true })
          : io.stdout;
        // Loaded here only: faker is large, and no other command needs it.
        const { writeGeneratedLeads } = await import('../../synthetic/index.js');
        const tally = await writeGeneratedLeads(out, {
          count: opts.count,
          seed: opts.seed,
          now: opts.now ?? Date.now(),
          format: opts.format,
        });
        if (opts.out) {
          out.end();
          await finished(out);
          writeLine(
            io.stderr,
            `wrote ${opts.count} leads to ${opts.out}: ${Object.entries(tally)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')}`,
          );
        }
      },
    );

  leads
    .command('list')
    .description('list stored leads, masked, newest first; page with --before-id')
    .addOption(new Option('--state <state>', 'only leads in this state').choices([...LEAD_STATES]))
    .option('--limit <n>', 'rows per page (1-1000)', wholeNumber(1, 1000), 50)
    .option(
      '--before-id <id>',
      'the page after this id (the last id of the previous page)',
      wholeNumber(1, Number.MAX_SAFE_INTEGER),
    )
    .option('--json', 'print as JSON')
    .action(async (opts: { state?: LeadState; limit: number; beforeId?: number; json?: boolean }) => {
      const { io } = ctx;
      await ctx.withApp(async (app) => {
        const rows = await app.listLeads({
          limit: opts.limit,
          ...(opts.state ? { state: opts.state } : {}),
          ...(opts.beforeId !== undefined ? { beforeId: opts.beforeId } : {}),
        });
        const nextBeforeId = rows.length === opts.limit ? (rows[rows.length - 1]?.id ?? null) : null;
        if (opts.json) return writeJson(io.stdout, { leads: rows, nextBeforeId });
        if (rows.length === 0) return writeLine(io.stdout, 'no leads');
        writeLine(
          io.stdout,
          formatLeadTable(
            ['ID', 'PSEUDONYM', 'NAME', 'EMAIL', 'PHONE', 'SCORE', 'STATE', 'SOURCE TIME'],
            rows.map((r) => ({
              cells: [
                r.id,
                r.pseudonym,
                r.name,
                r.email,
                r.phone,
                r.score,
                r.erased ? `${r.state} (erased)` : r.state,
                r.sourceTimestamp,
              ],
              attributes: r.attributes,
            })),
          ),
        );
        if (nextBeforeId !== null) writeLine(io.stdout, `next page: --before-id ${nextBeforeId}`);
      });
    });

  leads
    .command('show')
    .description(
      'show one stored lead, masked (a personal attribute too; one the profile declares not personal as it is)',
    )
    .argument('<id>', 'the lead id', wholeNumber(1, Number.MAX_SAFE_INTEGER))
    .option('--json', 'print as JSON')
    .action(async (id: number, opts: { json?: boolean }) => {
      const { io } = ctx;
      await ctx.withApp(async (app) => {
        // The page that starts at this id: the lead itself when it exists.
        const [lead] = await app.listLeads({ limit: 1, beforeId: id + 1 });
        if (lead === undefined || lead.id !== id) throw new CliExit(EXIT.failure, `no lead ${id}`);
        if (opts.json) return writeJson(io.stdout, { lead });
        const lines: [string, string | number | null][] = [
          ['id', lead.id],
          ['pseudonym', lead.pseudonym],
          ['name', lead.name],
          ['email', lead.email],
          ['phone', lead.phone],
          ['company', lead.company],
          ['score', lead.score],
          ['value', lead.value],
          ['source time', lead.sourceTimestamp],
          ['state', lead.erased ? `${lead.state} (erased at ${lead.erasedAt})` : lead.state],
          ['reason', lead.reason === null ? null : escapeText(lead.reason)],
          ...Object.entries(lead.attributes).map(([name, value]): [string, string | number | null] => [
            `attribute ${escapeText(name)}`,
            value === null ? null : escapeText(String(value)),
          ]),
        ];
        for (const [label, value] of lines) writeLine(io.stdout, `${`${label}:`.padEnd(20)} ${value ?? '—'}`);
      });
    });

  leads
    .command('erase')
    .description(
      "erase a person's data (name, e-mail, phone, company, external id) from every lead that holds it; " +
        'the row stays (its dedup key keeps the person from being ingested again); prints what the partner must be told; ' +
        'exit 1 when not found, 3 when refused (the lead is in a batch being sent, or the reason holds contact data); ' +
        'with -, each line of standard input is one request: each is reported, and the exit code is the worst of them',
    )
    .argument(
      '<lead>',
      'a lead id, an e-mail address, or - to read them from standard input, one a line (keeps e-mails out of the shell history)',
    )
    .requiredOption(
      '--reason <text>',
      'why: the request or ticket number, with its prefix (audited; never personal data)',
    )
    .option('--json', 'print as JSON')
    .action(async (lead: string, opts: { reason: string; json?: boolean }) => {
      const { io } = ctx;
      if (opts.reason.trim() === '') throw new CliExit(EXIT.usage, '--reason must not be empty');
      const contactData = refuseContactData(opts.reason, 'the reason');
      if (contactData !== null)
        throw new CliExit(EXIT.refused, `refused: ${contactData}; nothing was erased`);
      if (lead !== '-') {
        const target = parseLeadIdentifier(lead);
        if (target === null) throw new CliExit(EXIT.usage, NOT_AN_IDENTIFIER);
        await ctx.withApp(async (app) => {
          const result = await eraseLead(app, { target, reason: opts.reason });
          if (opts.json) writeJson(io.stdout, result);
          if (result.kind === 'not_found') throw new CliExit(EXIT.failure, result.message);
          if (result.kind === 'refused') throw new CliExit(EXIT.refused, `refused: ${result.message}`);
          if (opts.json) return;
          for (const erased of result.leads) printErased(io, erased);
          if (result.storageNote) writeLine(io.stderr, `note: ${result.storageNote}`);
        });
        return;
      }
      const requests = await identifierLines(io);
      if (requests.length === 0)
        throw new CliExit(EXIT.usage, 'standard input holds no lead id or e-mail address');
      await ctx.withApp(async (app) => {
        const reports: ErasureLineReport[] = [];
        let storageNote: string | null = null;
        for (const { line, target } of requests) {
          if (target === null) {
            reports.push({ line, outcome: 'invalid', message: NOT_AN_IDENTIFIER });
            continue;
          }
          // One erasure a line: each commits, or changes nothing, on its own.
          const result = await eraseLead(app, { target, reason: opts.reason });
          if (result.kind === 'erased') {
            storageNote = result.storageNote ?? storageNote;
            const changed = result.leads.some((l) => !l.alreadyErased);
            reports.push({ line, outcome: changed ? 'erased' : 'already_erased', leads: result.leads });
          } else {
            reports.push({ line, outcome: result.kind, message: result.message });
          }
        }
        const count = (outcome: ErasureLineReport['outcome']) =>
          reports.filter((r) => r.outcome === outcome).length;
        const tally = `${reports.length} requests: ${count('erased')} erased, ${count('already_erased')} already erased, ${count('not_found')} not found, ${count('refused')} refused, ${count('invalid')} not an id or e-mail`;
        if (opts.json) writeJson(io.stdout, { requests: reports, storageNote });
        else {
          for (const report of reports) {
            if ('leads' in report) {
              writeLine(
                io.stdout,
                `line ${report.line}: ${report.outcome === 'erased' ? 'erased' : 'already erased'}`,
              );
              for (const erased of report.leads) printErased(io, erased);
            } else {
              const said = { not_found: 'not found', refused: 'refused', invalid: 'not an id or e-mail' }[
                report.outcome
              ];
              writeLine(io.stdout, `line ${report.line}: ${said}: ${report.message}`);
            }
          }
          writeLine(io.stdout, tally);
          if (storageNote) writeLine(io.stderr, `note: ${storageNote}`);
        }
        if (count('refused') > 0) throw new CliExit(EXIT.refused, `not all done: ${tally}`);
        if (count('not_found') + count('invalid') > 0)
          throw new CliExit(EXIT.failure, `not all done: ${tally}`);
      });
    });
}

const NOT_AN_IDENTIFIER = 'the lead must be a lead id (a whole number) or an e-mail address';

/** One line of `leads erase -`: what became of it. The e-mail itself is never repeated. */
type ErasureLineReport =
  | { line: number; outcome: 'erased' | 'already_erased'; leads: ErasedLead[] }
  | { line: number; outcome: 'not_found' | 'refused' | 'invalid'; message: string };

/** Standard input, one lead id or e-mail address a line; blank lines are passed over. */
async function identifierLines(io: CliIo): Promise<{ line: number; target: LeadIdentifier | null }[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks)
    .toString('utf8')
    .split(/\r?\n/)
    .map((text, i) => ({ line: i + 1, text }))
    .filter(({ text }) => text.trim() !== '')
    .map(({ line, text }) => ({ line, target: parseLeadIdentifier(text) }));
}

function printErased(io: CliIo, lead: ErasedLead): void {
  const out = io.stdout;
  if (lead.alreadyErased) {
    writeLine(
      out,
      `lead ${lead.id} (${lead.pseudonym}): already erased at ${lead.erasedAt}; nothing changed`,
    );
  } else {
    const moved =
      lead.state === lead.stateBefore ? `state ${lead.state}` : `${lead.stateBefore} → ${lead.state}`;
    writeLine(
      out,
      `lead ${lead.id} (${lead.pseudonym}): erased ${lead.fields.join(', ') || 'nothing (no data held)'}; ${moved}`,
    );
  }
  const { partner } = lead;
  if (partner.level === 'none') {
    writeLine(out, '  partner: nothing to tell: no request carrying this lead ever left');
    return;
  }
  writeLine(
    out,
    partner.level === 'required'
      ? '  partner: MUST BE TOLD: it received this lead; file an erasure request with it, naming:'
      : '  partner: MAY HOLD IT: a request carrying this lead was made but not accepted; ask it to erase the lead if it has it, naming:',
  );
  const rows: [string, string][] = [['lead key', partner.leadKey]];
  if (partner.externalId !== null) rows.push(['external id', partner.externalId]);
  else if (lead.alreadyErased) rows.push(['external id', '(erased earlier: see the first erasure’s output)']);
  if (partner.exportedAt !== null) rows.push(['exported at', partner.exportedAt]);
  for (const batch of partner.batches) {
    const when = batch.lastAttemptAt ?? batch.firstAttemptAt;
    rows.push([
      'batch key',
      `${batch.batchKey} (${batch.state}, ${batch.attempts} attempt${batch.attempts === 1 ? '' : 's'}${when ? `, last ${when}` : ''})`,
    ]);
  }
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, value] of rows) writeLine(out, `    ${label.padEnd(width)}  ${value}`);
}
