import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { API_ROLES, type ApiRole } from '../../config/index.js';
import { checkDashboard } from '../../rehearsal/index.js';
import { createApiToken, startServer } from '../../server/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeJson, writeLine } from '../output.js';
import { shutdownSignals } from '../signals.js';

const TOKEN_NAME = /^[A-Za-z0-9._@-]{1,64}$/;

export function registerServe(program: Command, ctx: Context): void {
  program
    .command('serve')
    .description(
      'serve the admin API and dashboard alone (valhalla run serves them too), on VALHALLA_SERVER_HOST:VALHALLA_SERVER_PORT',
    )
    .option('--port <port>', 'this port instead of VALHALLA_SERVER_PORT (0: any free port)', (value) => {
      if (!/^\d+$/.test(value) || Number(value) > 65_535) {
        throw new InvalidArgumentError(`must be a port number from 0 to 65535, not ${value}`);
      }
      return Number(value);
    })
    .action(async (opts: { port?: number }) => {
      const config = ctx.config();
      const port = opts.port ?? config.server.port;
      if (port === null) {
        throw new CliExit(EXIT.refused, 'VALHALLA_SERVER_PORT is off: set a port, or pass --port');
      }
      await ctx.withApp(async (app) => {
        const signals = shutdownSignals(ctx, 'closing the dashboard, ', false);
        try {
          const metrics = app.metrics();
          const server = await startServer({ app, metrics, port }).catch((error: unknown) => {
            throw new CliExit(EXIT.failure, (error as Error).message);
          });
          writeLine(
            ctx.io.stdout,
            `dashboard: ${server.url}/ (admin API ${server.url}/api, docs ${server.url}/api/docs)`,
          );
          if (config.server.tokens.length === 0) {
            writeLine(
              ctx.io.stdout,
              'no API tokens are configured: every request is refused. Create one with `valhalla tokens create`.',
            );
          }
          await new Promise<void>((resolve) => {
            if (signals.stop.aborted) resolve();
            signals.stop.addEventListener('abort', () => resolve(), { once: true });
          });
          await server.close();
        } finally {
          signals.release();
        }
      });
    });

  program
    .command('dashboard')
    .description('the dashboard')
    .command('check')
    .description(
      "gate 5's dashboard item: the running dashboard answers, serves this installation, and shows an event within 1 s (audited as evidence)",
    )
    .requiredOption('--token-file <file>', 'a file holding an API token (any role) for the dashboard')
    .option('--url <url>', 'the dashboard (default: http://VALHALLA_SERVER_HOST:VALHALLA_SERVER_PORT)')
    .option('--json', 'print as JSON')
    .action(async (opts: { tokenFile: string; url?: string; json?: boolean }) => {
      const config = ctx.config();
      let token: string;
      try {
        token = readFileSync(resolve(ctx.io.cwd, opts.tokenFile), 'utf8').trim();
      } catch (error) {
        throw new CliExit(
          EXIT.failure,
          `cannot read the token file ${opts.tokenFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        );
      }
      if (token === '') throw new CliExit(EXIT.usage, `the token file ${opts.tokenFile} is empty`);
      const url =
        opts.url ??
        (config.server.port === null
          ? null
          : `http://${config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host}:${config.server.port}`);
      if (url === null || (opts.url === undefined && config.server.port === 0)) {
        throw new CliExit(
          EXIT.usage,
          `VALHALLA_SERVER_PORT is ${config.server.port === 0 ? '0 (any free port)' : 'off'}: give the dashboard's address with --url`,
        );
      }
      await ctx.withApp(async (app) => {
        const result = await checkDashboard(app, { url, token });
        if (opts.json) writeJson(ctx.io.stdout, result);
        else {
          for (const c of result.checks)
            writeLine(ctx.io.stdout, `${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`);
          writeLine(
            ctx.io.stdout,
            `dashboard check ${result.passed ? 'passed' : 'FAILED'} (recorded as gate 5 evidence)`,
          );
        }
        if (!result.passed) throw new CliExit(EXIT.refused, 'the dashboard check failed');
      });
    });

  const tokens = program.command('tokens').description('API tokens for the admin API and dashboard');
  tokens
    .command('create')
    .description(
      'create an API token: prints the token once (give it to its holder) and the entry to add to VALHALLA_API_TOKENS (its hash only); needs no database',
    )
    .requiredOption('--name <name>', 'who holds it (1-64 letters, digits or . _ @ -)')
    .requiredOption('--role <role>', `one of ${API_ROLES.join(', ')}`)
    .action((opts: { name: string; role: string }) => {
      if (!TOKEN_NAME.test(opts.name)) {
        throw new CliExit(
          EXIT.usage,
          `--name must be 1-64 letters, digits or . _ @ -, not ${JSON.stringify(opts.name)}`,
        );
      }
      if (!API_ROLES.includes(opts.role as ApiRole)) {
        throw new CliExit(
          EXIT.usage,
          `--role must be one of ${API_ROLES.join(', ')}, not ${JSON.stringify(opts.role)}`,
        );
      }
      const { token, entry } = createApiToken(opts.name, opts.role as ApiRole);
      writeLine(ctx.io.stdout, `token (shown once; only its hash is kept): ${token}`);
      writeLine(ctx.io.stdout, `add to VALHALLA_API_TOKENS (comma-separated entries): ${entry}`);
    });
}
