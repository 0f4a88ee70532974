import { resolve } from 'node:path';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { type PartnerPreview, PREVIEW_MAX_LEADS, previewPartnerRequest } from '../../app/index.js';
import { isPartnerProfileError, loadPartnerProfile, type PartnerProfile } from '../../partner/index.js';
import { wholeNumber } from '../arguments.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeJson, writeLine } from '../output.js';

export function registerPartner(program: Command, ctx: Context): void {
  const partner = program.command('partner').description('partner profiles: check what a profile would send');

  partner
    .command('preview')
    .description(
      'print the request a partner profile would send for the leads the next cycle would pick (one batch): ' +
        'method, URL, headers (no secret) and body; personal data masked unless --reveal with an admin API token (audited). ' +
        'Exit 2 when the profile or an option is refused, 3 when a reveal is refused',
    )
    .option(
      '--profile <file>',
      'the partner profile (JSON) to preview (default: the configured one, VALHALLA_PARTNER_PROFILE)',
    )
    .option(
      '--limit <n>',
      `how many leads (1-${PREVIEW_MAX_LEADS}; above is refused)`,
      wholeNumber(1, PREVIEW_MAX_LEADS),
      3,
    )
    .option('--reveal', 'show the values unmasked (needs --admin-token; audited as partner.preview_revealed)')
    .option(
      '--admin-token <token>',
      'an API token whose role is admin (from `valhalla tokens create`), or - to read it from standard input (keeps it out of the shell history)',
    )
    .option('--json', 'print as JSON')
    .action(
      async (opts: {
        profile?: string;
        limit: number;
        reveal?: boolean;
        adminToken?: string;
        json?: boolean;
      }) => {
        const { io } = ctx;
        if (opts.adminToken !== undefined && !opts.reveal) {
          throw new CliExit(EXIT.usage, '--admin-token is for --reveal only');
        }
        // A profile named here is read before anything else; otherwise the configured one is used.
        let chosen: { profile: PartnerProfile; file: string } | null = null;
        if (opts.profile !== undefined) {
          const file = resolve(io.cwd, opts.profile);
          try {
            chosen = { profile: loadPartnerProfile(file), file };
          } catch (error) {
            if (isPartnerProfileError(error)) throw new CliExit(EXIT.usage, error.message);
            throw error;
          }
        }
        let reveal: { tokenName: string } | undefined;
        if (opts.reveal) {
          const token = opts.adminToken === '-' ? await firstLineOfStdin(ctx) : opts.adminToken;
          reveal = await verifyAdmin(ctx, token);
        }
        await ctx.withApp(async (app) => {
          const { profile, file } = chosen ?? app.config.partner.profile;
          const preview = await previewPartnerRequest(app, {
            profile,
            profileFile: file,
            limit: opts.limit,
            ...(reveal ? { reveal } : {}),
          });
          if (opts.json) return writeJson(io.stdout, preview);
          printPreview(io.stdout, preview);
        });
      },
    );
}

/** `--admin-token -`: the token is the first line of standard input. */
async function firstLineOfStdin(ctx: Context): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.io.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

/**
 * The reveal's confirmation: the token must be one of VALHALLA_API_TOKENS (looked up as the admin
 * API does: its SHA-256, compared in constant time) and its role admin. Anything else is refused
 * before the store is opened: nothing is read, shown or audited.
 */
async function verifyAdmin(ctx: Context, token: string | undefined): Promise<{ tokenName: string }> {
  if (token === undefined || token.trim() === '') {
    throw new CliExit(
      EXIT.refused,
      'refused: --reveal needs --admin-token with an admin API token; nothing was revealed',
    );
  }
  // The admin API's own token book: loaded only for a reveal (the server module is large).
  const { createTokenBook, roleAtLeast } = await import('../../server/index.js');
  const entry = createTokenBook(ctx.config().server.tokens).lookup(token.trim());
  if (entry === null) {
    throw new CliExit(
      EXIT.refused,
      'refused: the admin token is not one of VALHALLA_API_TOKENS (unknown or revoked); nothing was revealed',
    );
  }
  if (!roleAtLeast(entry.role, 'admin')) {
    throw new CliExit(
      EXIT.refused,
      `refused: the token of ${entry.name} has the role ${entry.role}, not admin; nothing was revealed`,
    );
  }
  return { tokenName: entry.name };
}

function printPreview(out: Writable, preview: PartnerPreview): void {
  const { profile, request } = preview;
  writeLine(out, `profile ${profile.name} (${profile.file})`);
  writeLine(out, `  sha256 ${profile.sha256}`);
  writeLine(
    out,
    `leads the next ${preview.selection === 'live' ? 'live cycle' : 'dry run'} would pick: ${preview.leads.length}` +
      (preview.leads.length === 0 ? ' (none pending and eligible)' : ''),
  );
  for (const lead of preview.leads) {
    writeLine(
      out,
      `  lead ${lead.id} (${lead.pseudonym}) ${lead.leadKey} score ${lead.score} ${lead.sourceTimestamp}` +
        (lead.inRequest ? '' : ' (not in the request: see the problems)'),
    );
  }
  if (preview.problems.length > 0) {
    writeLine(out, 'problems (no values shown):');
    for (const p of preview.problems) {
      const who = p.leadId === null ? 'batch' : `lead ${p.leadId} (${p.pseudonym})`;
      writeLine(out, `  ${who}: ${p.where}: ${p.problem}`);
    }
  }
  if (request === null) {
    writeLine(out, 'no request: no lead can be written');
    return;
  }
  writeLine(out);
  writeLine(
    out,
    preview.masked
      ? 'the request (personal data MASKED: the partner would get the real values; --reveal with an admin token shows them):'
      : 'the request (UNMASKED: revealed to an admin, audited as partner.preview_revealed):',
  );
  writeLine(
    out,
    `${request.method} ${request.url ?? `${request.path} (no VALHALLA_PARTNER_URL configured)`}`,
  );
  for (const h of request.headers) writeLine(out, `${h.name}: ${h.value}`);
  writeLine(out);
  writeJson(out, request.body);
}
