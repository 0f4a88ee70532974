import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { SecureVersion } from 'node:tls';
import { type Clock, type Sleep, systemClock } from '../clock/index.js';
import {
  createSelfSignedCertificate,
  loadOrCreateCertificate,
  type SandboxCertificate,
} from './certificate.js';
import { CRM_HEALTH_PATH, CRM_LEADS_PATH } from './crm.js';
import { SandboxError } from './errors.js';
import {
  defaultFaults,
  FaultState,
  parseFaultsPatch,
  type SandboxFaults,
  type SandboxFaultsPatch,
} from './faults.js';
import { Ledger, type SandboxLeadRecords, type SandboxRecords, type SandboxStats } from './ledger.js';
import { createHandler, SANDBOX_PROFILES, type SandboxProfile } from './routes.js';
import { StaticBearer, TokenIssuer } from './tokens.js';

export { SANDBOX_PROFILES };

export interface SandboxPartnerOptions {
  /**
   * The contract played, fixed for the server's life: `valhalla` (today's: OAuth2, `POST /api/leads`,
   * the default) or `crm-batch-contacts` (a CRM's batch create with a static bearer token).
   */
  profile?: SandboxProfile;
  /** CRM mode: the static token batches must present. Default: random for each start (printed by the CLI). */
  bearerToken?: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: a free port, read back from `url`. */
  port?: number;
  /** Default `valhalla-sandbox`. */
  clientId?: string;
  /** Default: random for each start (printed by the CLI). */
  clientSecret?: string;
  /** Token expiry and record times; default the system clock. */
  clock?: Clock;
  /** The latency fault's wait: default a real timer; a simulation passes its clock's virtual sleep. */
  sleep?: Sleep;
  /** Faults in force from the start (and restored by `reset()`). */
  faults?: SandboxFaultsPatch;
  /** A PEM key and certificate to serve. Without one, a self-signed certificate is made. */
  tls?: SandboxCertificate;
  /** Where the self-signed certificate is cached, so restarts keep the same CA. Default: not cached. */
  certDir?: string;
  /**
   * The newest TLS version served. `TLSv1.1` makes a TLS-1.1-only server (minimum 1.1 too, and
   * OpenSSL's security level 0 for its SHA-1 ciphers) that a TLS ≥ 1.2 client must refuse.
   */
  tlsMaxVersion?: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  /** Serve plain HTTP (loopback hosts only): for Phase 3 dry-run demos. */
  plainHttp?: boolean;
}

/** A running sandbox partner. */
export interface SandboxPartner {
  /** The partner base URL, e.g. `https://127.0.0.1:8443`. */
  readonly url: string;
  /** The contract played. */
  readonly profile: SandboxProfile;
  /** Where batches go: `…/api/leads`, or the CRM's batch create. */
  readonly leadsUrl: string;
  readonly healthUrl: string;
  /** The OAuth2 token endpoint (today's contract; CRM mode has none and answers it 404). */
  readonly tokenUrl: string;
  /** CRM mode: the static bearer token; null for today's contract. */
  readonly bearerToken: string | null;
  /** The certificate to trust as the clients' `ca`; null over plain HTTP. */
  readonly caPem: string | null;
  /** The cached certificate file (with `certDir`); null otherwise. */
  readonly caFile: string | null;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly port: number;
  stats(): SandboxStats;
  records(): SandboxRecords;
  /** What became of each lead key (received, accepted, duplicates, refusals): both contracts. */
  leads(): SandboxLeadRecords;
  faults(): SandboxFaults;
  /** Change faults at run time; throws `INVALID_FAULTS` (and changes nothing) on a bad value. */
  setFaults(patch: SandboxFaultsPatch): SandboxFaults;
  /** Forget stats, records and batch keys, and restore the start-time faults. Issued tokens stay valid. */
  reset(): void;
  /** Stop listening and end every connection, hanging ones included. Safe to call twice. */
  close(): Promise<void>;
}

const TLS_VERSIONS: Record<NonNullable<SandboxPartnerOptions['tlsMaxVersion']>, SecureVersion> = {
  'TLSv1.1': 'TLSv1.1',
  'TLSv1.2': 'TLSv1.2',
  'TLSv1.3': 'TLSv1.3',
};

/** Start the sandbox partner: a real HTTPS (or loopback HTTP) server implementing the partner's API. */
export async function startSandboxPartner(options: SandboxPartnerOptions = {}): Promise<SandboxPartner> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  checkOptions(options, host, port);
  const clock = options.clock ?? systemClock;
  const clientId = options.clientId ?? 'valhalla-sandbox';
  const clientSecret = options.clientSecret ?? randomBytes(18).toString('base64url');
  const profile = options.profile ?? 'valhalla';
  const crm = profile === 'crm-batch-contacts';
  const bearerToken = crm ? (options.bearerToken ?? randomBytes(24).toString('base64url')) : null;

  const startFaults = new FaultState(defaultFaults());
  startFaults.apply(parseFaultsPatch(options.faults ?? {}));
  const initialFaults = { ...startFaults.current };
  let faultState = startFaults;

  const ledger = new Ledger();
  const tokens = new TokenIssuer(clientId, clientSecret, clock);
  const setFaults = (patch: unknown) => faultState.apply(parseFaultsPatch(patch));
  const reset = () => {
    ledger.reset();
    faultState = new FaultState(initialFaults);
  };
  const handler = createHandler({
    clock,
    sleep: options.sleep ?? null,
    ledger,
    profile,
    tokens,
    bearer: new StaticBearer(bearerToken ?? randomBytes(24).toString('base64url')),
    faults: () => faultState,
    setFaults,
    reset,
  });

  let certificate: SandboxCertificate | null = null;
  let caFile: string | null = null;
  if (!options.plainHttp) {
    if (options.tls !== undefined) certificate = options.tls;
    else if (options.certDir !== undefined) {
      const cached = await loadOrCreateCertificate(options.certDir, Date.now());
      certificate = { key: cached.key, cert: cached.cert };
      caFile = cached.certFile;
    } else certificate = await createSelfSignedCertificate(Date.now());
  }

  const server =
    certificate === null
      ? http.createServer(handler)
      : https.createServer(
          { key: certificate.key, cert: certificate.cert, ...tlsVersions(options) },
          handler,
        );
  // Tracked so close() can end every connection, including requests left hanging on purpose.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await listen(server, port, host);
  const actualPort = (server.address() as AddressInfo).port;
  const url = `${certificate === null ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;

  let closing: Promise<void> | undefined;
  return {
    url,
    profile,
    leadsUrl: `${url}${crm ? CRM_LEADS_PATH : '/api/leads'}`,
    healthUrl: `${url}${crm ? CRM_HEALTH_PATH : '/health'}`,
    tokenUrl: `${url}/oauth/token`,
    bearerToken,
    caPem: certificate?.cert ?? null,
    caFile,
    clientId,
    clientSecret,
    port: actualPort,
    stats: () => ledger.snapshot(),
    records: () => ledger.records(),
    leads: () => ledger.leads(),
    faults: () => ({ ...faultState.current }),
    setFaults,
    reset,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function tlsVersions(options: SandboxPartnerOptions): https.ServerOptions {
  const max = TLS_VERSIONS[options.tlsMaxVersion ?? 'TLSv1.3'];
  // OpenSSL 3 refuses TLS 1.1's SHA-1 handshake signatures at the default security level 1:
  // without level 0 the server fails every TLS 1.1 handshake with an internal error.
  if (max === 'TLSv1.1')
    return { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };
  return { minVersion: 'TLSv1.2', maxVersion: max };
}

function checkOptions(options: SandboxPartnerOptions, host: string, port: number): void {
  const problems: string[] = [];
  if (!Number.isInteger(port) || port < 0 || port > 65_535) problems.push(`port ${port} is not 0..65535`);
  if (host.trim() === '') problems.push('host is empty');
  if (options.plainHttp && !isLoopback(host)) {
    problems.push(`plain HTTP is served on loopback hosts only, not ${host}`);
  }
  if (options.plainHttp && (options.tls !== undefined || options.tlsMaxVersion !== undefined)) {
    problems.push('plainHttp cannot be combined with tls or tlsMaxVersion');
  }
  if (options.tlsMaxVersion !== undefined && !(options.tlsMaxVersion in TLS_VERSIONS)) {
    problems.push(`tlsMaxVersion ${options.tlsMaxVersion} is not TLSv1.1, TLSv1.2 or TLSv1.3`);
  }
  if (options.profile !== undefined && !SANDBOX_PROFILES.includes(options.profile)) {
    problems.push(`profile ${String(options.profile)} is not ${SANDBOX_PROFILES.join(' or ')}`);
  }
  if (options.bearerToken !== undefined) {
    if (options.profile !== 'crm-batch-contacts') {
      problems.push('bearerToken is for the crm-batch-contacts profile only');
    } else if (!/^[\x21-\x7e]{8,200}$/.test(options.bearerToken)) {
      problems.push('bearerToken must be 8 to 200 printable characters without spaces');
    }
  }
  if (options.clientId !== undefined && options.clientId === '') problems.push('clientId is empty');
  if (options.clientSecret !== undefined && options.clientSecret === '')
    problems.push('clientSecret is empty');
  if (problems.length > 0) {
    throw new SandboxError('INVALID_OPTIONS', `invalid sandbox options: ${problems.join('; ')}`);
  }
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
