import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type ErasedLead, eraseLead, type LeadIdentifier, parseLeadIdentifier } from '../../app/erasure.js';
import type { SourceFormat } from '../../ingest/index.js';
import { LEAD_STATES, type LeadState } from '../../policy/index.js';
import type { Context } from '../context.js';
import { CliExit, type CliIo, EXIT, formatTable, writeJson, writeLine } from '../output.js';

export function wholeNumber(min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`not a whole number: ${value}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`must be from ${min} to ${max}`);
    return n;
  };
}

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
    .option('--out <file>', 'write to a file instead of standard output')
    .option('--now <iso>', 'the instant the timestamps are relative to (default: now)', instant)
    .action(
      async (opts: { count: number; seed: number; format: SourceFormat; out?: string; now?: number }) => {
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
        if (outPath) await mkdir(dirname(outPath), { recursive: true });
        const out = outPath ? createWriteStream(outPath, { mode: 0o600 }) : io.stdout;
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
          formatTable(
            ['ID', 'PSEUDONYM', 'NAME', 'EMAIL', 'PHONE', 'SCORE', 'STATE', 'SOURCE TIME'],
            rows.map((r) => [
              r.id,
              r.pseudonym,
              r.name,
              r.email,
              r.phone,
              r.score,
              r.erased ? `${r.state} (erased)` : r.state,
              r.sourceTimestamp,
            ]),
          ),
        );
        if (nextBeforeId !== null) writeLine(io.stdout, `next page: --before-id ${nextBeforeId}`);
      });
    });

  leads
    .command('erase')
    .description(
      "erase a person's data (name, e-mail, phone, company, external id) from every lead that holds it; " +
        'the row stays (its dedup key keeps the person from being ingested again); prints what the partner must be told; ' +
        'exit 1 when not found, 3 when the lead is in a batch being sent',
    )
    .argument(
      '<lead>',
      'a lead id, an e-mail address, or - to read either from standard input (keeps an e-mail out of the shell history)',
    )
    .requiredOption('--reason <text>', 'why: the request or ticket number (audited; never personal data)')
    .option('--json', 'print as JSON')
    .action(async (lead: string, opts: { reason: string; json?: boolean }) => {
      const { io } = ctx;
      const target = await leadIdentifier(lead, io);
      if (opts.reason.trim() === '') throw new CliExit(EXIT.usage, '--reason must not be empty');
      await ctx.withApp(async (app) => {
        const result = await eraseLead(app, { target, reason: opts.reason });
        if (opts.json) writeJson(io.stdout, result);
        if (result.kind === 'not_found') throw new CliExit(EXIT.failure, result.message);
        if (result.kind === 'refused') throw new CliExit(EXIT.refused, `refused: ${result.message}`);
        if (opts.json) return;
        for (const erased of result.leads) printErased(io, erased);
        if (result.storageNote) writeLine(io.stderr, `note: ${result.storageNote}`);
      });
    });
}

/** The lead argument: `-` reads it from standard input; the value is never echoed (it may be an e-mail). */
async function leadIdentifier(argument: string, io: CliIo): Promise<LeadIdentifier> {
  let text = argument;
  if (argument === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of io.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    text =
      Buffer.concat(chunks)
        .toString('utf8')
        .split(/\r?\n/)
        .find((l) => l.trim() !== '') ?? '';
  }
  const target = parseLeadIdentifier(text);
  if (target === null) {
    throw new CliExit(EXIT.usage, 'the lead must be a lead id (a whole number) or an e-mail address');
  }
  return target;
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
