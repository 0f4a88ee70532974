import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import {
  isSandboxError,
  SANDBOX_PROFILES,
  type SandboxFaultsPatch,
  type SandboxPartnerOptions,
  type SandboxProfile,
  startSandboxPartner,
} from '../../sandbox/index.js';
import type { Context } from '../context.js';
import { CliExit, EXIT, writeLine } from '../output.js';

interface SandboxCliOptions {
  profile: SandboxProfile;
  bearerToken?: string;
  port: number;
  host: string;
  certDir?: string;
  clientId?: string;
  clientSecret?: string;
  errorRate?: number;
  seed?: number;
  latencyMs?: number;
  tokenTtl?: number;
  tls11Only?: boolean;
  plainHttp?: boolean;
  json?: boolean;
}

function wholeNumber(min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`not a whole number: ${value}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`must be from ${min} to ${max}`);
    return n;
  };
}

function profileName(value: string): SandboxProfile {
  const found = SANDBOX_PROFILES.find((p) => p === value);
  if (found === undefined) throw new InvalidArgumentError(`not ${SANDBOX_PROFILES.join(' or ')}: ${value}`);
  return found;
}

function share(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new InvalidArgumentError(`not a number from 0 to 1: ${value}`);
  }
  return n;
}

export function registerSandbox(program: Command, ctx: Context): void {
  program
    .command('sandbox-partner')
    .description(
      'run the sandbox partner (HTTPS partner API with OAuth2, idempotency and faults on demand) until SIGINT/SIGTERM',
    )
    .option(
      '--profile <name>',
      `the contract played: ${SANDBOX_PROFILES.join(' or ')} (a CRM's batch create, static bearer token)`,
      profileName,
      'valhalla' as SandboxProfile,
    )
    .option(
      '--bearer-token <token>',
      'crm-batch-contacts: the static bearer token (default: random, printed)',
    )
    .option('--port <port>', 'port to listen on (0: any free port)', wholeNumber(0, 65_535), 8443)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--cert-dir <dir>', 'where the self-signed certificate is kept (default: <data dir>/sandbox)')
    .option('--client-id <id>', 'the OAuth2 client id (default: valhalla-sandbox)')
    .option('--client-secret <secret>', 'the OAuth2 client secret (default: random, printed)')
    .option('--error-rate <share>', 'share of /api/leads requests answered 503 (0 to 1)', share)
    .option(
      '--seed <n>',
      'seed for the error draws (the same seed fails the same requests)',
      wholeNumber(0, 2 ** 31),
    )
    .option('--latency-ms <ms>', 'delay before every partner answer', wholeNumber(0, 600_000))
    .option('--token-ttl <seconds>', 'token lifetime (default 3600)', wholeNumber(1, 30 * 86_400))
    .option('--tls11-only', 'serve TLS 1.1 only: a client requiring TLS >= 1.2 must refuse it')
    .option('--plain-http', 'serve plain HTTP (loopback hosts only; Phase 3 dry-run demos)')
    .option('--json', 'print JSON lines')
    .action(async (opts: SandboxCliOptions) => {
      const { io } = ctx;
      const faults: SandboxFaultsPatch = {
        ...(opts.errorRate !== undefined ? { errorRate: opts.errorRate } : {}),
        ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
        ...(opts.latencyMs !== undefined ? { latencyMs: opts.latencyMs } : {}),
        ...(opts.tokenTtl !== undefined ? { tokenTtlSeconds: opts.tokenTtl } : {}),
      };
      if (opts.bearerToken !== undefined && opts.profile !== 'crm-batch-contacts') {
        throw new CliExit(EXIT.usage, '--bearer-token is for --profile crm-batch-contacts only');
      }
      const crm = opts.profile === 'crm-batch-contacts';
      const options: SandboxPartnerOptions = {
        profile: opts.profile,
        ...(opts.bearerToken !== undefined ? { bearerToken: opts.bearerToken } : {}),
        host: opts.host,
        port: opts.port,
        faults,
        ...(opts.clientId !== undefined ? { clientId: opts.clientId } : {}),
        ...(opts.clientSecret !== undefined ? { clientSecret: opts.clientSecret } : {}),
        ...(opts.tls11Only ? { tlsMaxVersion: 'TLSv1.1' as const } : {}),
        ...(opts.plainHttp ? { plainHttp: true } : { certDir: certDir(ctx, opts.certDir) }),
      };

      let partner: Awaited<ReturnType<typeof startSandboxPartner>>;
      try {
        partner = await startSandboxPartner(options);
      } catch (error) {
        if (isSandboxError(error)) {
          throw new CliExit(error.code === 'CERTIFICATE_INVALID' ? EXIT.failure : EXIT.usage, error.message);
        }
        const code = (error as { code?: unknown }).code;
        if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
          throw new CliExit(EXIT.failure, `cannot listen on ${opts.host}:${opts.port}: ${code}`);
        }
        throw error;
      }

      const started = {
        event: 'listening',
        profile: partner.profile,
        url: partner.url,
        leadsUrl: partner.leadsUrl,
        ...(crm ? { bearerToken: partner.bearerToken } : { tokenUrl: partner.tokenUrl }),
        healthUrl: partner.healthUrl,
        caFile: partner.caFile,
        ...(crm ? {} : { clientId: partner.clientId, clientSecret: partner.clientSecret }),
        tls: opts.plainHttp ? 'none (plain HTTP)' : opts.tls11Only ? 'TLSv1.1 only' : 'TLSv1.2+',
        faults,
      };
      if (opts.json) writeLine(io.stdout, JSON.stringify(started));
      else {
        writeLine(io.stdout, `sandbox partner listening on ${started.url} (${started.tls})`);
        writeLine(io.stdout, `  contract:      ${started.profile}`);
        writeLine(io.stdout, `  leads URL:     ${started.leadsUrl}`);
        if (!crm) writeLine(io.stdout, `  token URL:     ${partner.tokenUrl}`);
        writeLine(io.stdout, `  health URL:    ${started.healthUrl}`);
        if (started.caFile !== null) writeLine(io.stdout, `  CA file:       ${started.caFile}`);
        if (crm) writeLine(io.stdout, `  bearer token:  ${partner.bearerToken}`);
        else {
          writeLine(io.stdout, `  client id:     ${partner.clientId}`);
          writeLine(io.stdout, `  client secret: ${partner.clientSecret}`);
        }
        writeLine(
          io.stdout,
          `  admin:         GET ${started.url}/stats, GET /records, GET /leads, POST /faults, POST /reset (no auth)`,
        );
        writeLine(io.stdout, 'stop with Ctrl-C (SIGINT) or SIGTERM');
      }

      const signal = await untilStopSignal();
      await partner.close();
      const stats = partner.stats();
      const stopped = {
        event: 'stopped',
        signal,
        requests: stats.requests.total,
        batchesAccepted: stats.batches.accepted,
        leadsAccepted: stats.leads.accepted,
      };
      if (opts.json) writeLine(io.stdout, JSON.stringify(stopped));
      else
        writeLine(
          io.stdout,
          `sandbox partner stopped (${signal}): ${stopped.requests} requests, ${stopped.batchesAccepted} batches and ${stopped.leadsAccepted} leads accepted`,
        );
    });
}

/**
 * The certificate folder: given, or under the data folder. The sandbox needs no database, so a
 * configuration that is incomplete for the rest of Valhalla (no pseudonym secret yet) is not an
 * error here: the data folder is then read straight from VALHALLA_DATA_DIR.
 */
function certDir(ctx: Context, given: string | undefined): string {
  if (given !== undefined) return resolve(ctx.io.cwd, given);
  let dataDir: string;
  try {
    dataDir = ctx.config().dataDir;
  } catch {
    dataDir = resolve(ctx.io.cwd, ctx.io.env.VALHALLA_DATA_DIR ?? 'data');
  }
  // Only `init` creates an installation's folder: without one, the certificate needs a folder named.
  if (!existsSync(dataDir)) {
    throw new CliExit(
      EXIT.failure,
      `no installation at ${dataDir} to keep the sandbox's certificate in: give --cert-dir DIR, or --plain-http, or run valhalla init first`,
    );
  }
  return join(dataDir, 'sandbox');
}

function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolveSignal) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolveSignal(signal);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
