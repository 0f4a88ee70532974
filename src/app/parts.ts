// The parts an app is assembled from: the store opened and checked, the audit log, the alert
// recorder and request monitor, the limits in force and the gate clearance, and the parts built on
// first use (partner clients, the runner's leadership, alert channels, the upload thread), each
// released when the app closes.
import { existsSync } from 'node:fs';
import {
  type AlertChannel,
  type AlertRecorder,
  configuredChannels,
  createAlertChannels,
  createAlertRecorder,
} from '../alerts/index.js';
import { type AuditLog, createAuditLog } from '../audit/index.js';
import { type Clock, systemClock, systemSleep } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { createLimitsInForce, type LimitsInForce } from '../control/index.js';
import { createLeadership, type Leadership, type PartnerPort } from '../engine/index.js';
import { ensurePrivateDir } from '../files/index.js';
import { createGateClearance } from '../gates/index.js';
import type { IngestDeps } from '../ingest/index.js';
import { createLogger, type Logger } from '../log/index.js';
import { createRequestMonitor, type RequestMonitor } from '../monitor/index.js';
import { DEFAULT_RATE_MARGIN_MS, limiterShape } from '../outbound/index.js';
import { createPseudonymizer, type Pseudonymizer } from '../pii/index.js';
import { openStore, type Store } from '../store/index.js';
import { AppError } from './errors.js';
import { ingestDepsOf } from './ingest-deps.js';
import { checkInstallation } from './installation-checks.js';
import { createPartnerClientFromConfig, type PartnerClient } from './partner.js';
import { createReleasers, type Releasers } from './releasers.js';
import type { OpenAppOptions } from './types.js';
import { createUploadIngester, type UploadIngester } from './upload-ingest.js';

/**
 * A runner that takes over an expired lease waits the request timeout plus this before resending
 * the old leader's batches caught mid-request: its last request may still have been in flight.
 */
const TAKEOVER_MARGIN_MS = 5_000;
/** Added to the request timeout for an unanswered start's deadline in the shared start log. */
const START_DEADLINE_SLACK_MS = 1_000;

/** Closed on a best-effort basis: a connection that will not close is not the caller's failure. */
const quietly = (close: () => Promise<void>) => () => close().catch(() => undefined);

export interface AppParts {
  readonly config: Config;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly store: Store;
  readonly audit: AuditLog;
  readonly releasers: Releasers;
  /** The pseudonymizer, or NOT_INITIALIZED when there is no secret. */
  requirePseudonymizer(): Pseudonymizer;
  ingestDeps(): IngestDeps;
  readonly alerts: AlertRecorder;
  readonly requestMonitor: RequestMonitor;
  /** The configured alert channels (created on first use). */
  alertChannels(): AlertChannel[];
  readonly limits: LimitsInForce;
  readonly gates: ReturnType<typeof createGateClearance>;
  /** Phase 4 only: in Phase 3 no partner client exists, so no socket to the partner can be opened. */
  partnerFromConfig(led?: Leadership): PartnerPort | null;
  /** This process's place among the runners (built on first use). */
  leadership(): Leadership;
  /** The upload thread (started on first use). */
  uploadIngester(): UploadIngester;
  /** Ahead of an upload being stored in this process (upload-ingest.ts): a stop never queues behind it. */
  ahead<T>(commit: () => Promise<T>): Promise<T>;
}

/** Open the store, check the installation and build the parts; a failed check releases what was opened. */
export async function openParts(options: OpenAppOptions): Promise<AppParts> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger({ level: config.logLevel, file: config.logFile });
  const releasers = createReleasers();
  releasers.add(() => logger.flush());
  // The data folder holds PII (the database, rejects files): 0700, tightened if an older release or a
  // loose umask left it open; the database's own files are tightened as the store opens.
  const tightened = existsSync(config.dataDir) ? [ensurePrivateDir(config.dataDir)] : [];
  // A store that cannot open, or an installation check that fails: what was acquired so far (the
  // logger, the store) is released in reverse order, and the opening error is the one thrown.
  const store = await openStore(config.database).catch(async (error: unknown) => {
    await releasers.releaseAll().catch(() => undefined);
    throw error;
  });
  releasers.add(() => store.close());
  for (const note of [...tightened, ...store.tightened]) {
    if (note !== null) logger.warn({ note }, 'a file or folder open to other users was made private');
  }
  const audit = createAuditLog(store, clock);
  let pseudonymizer: Pseudonymizer | null = null;
  try {
    if (config.pseudonymSecret !== null) pseudonymizer = createPseudonymizer(config.pseudonymSecret);
    const stopOnly = options.stopOnly === true;
    await checkInstallation({ store, audit, clock, logger, config, pseudonymizer, stopOnly });
  } catch (error) {
    await releasers.releaseAll().catch(() => undefined);
    throw error;
  }

  const requirePseudonymizer = (): Pseudonymizer => {
    if (pseudonymizer) return pseudonymizer;
    throw new AppError(
      'NOT_INITIALIZED',
      `no pseudonym secret: run \`valhalla init\` (creates ${config.pseudonymSecretFile}) or set VALHALLA_PSEUDONYM_SECRET`,
    );
  };
  const ingestDeps = (): IngestDeps =>
    ingestDepsOf(config, { store, audit, clock, logger, pseudonymizer: requirePseudonymizer() });

  let partnerClient: PartnerClient | null = null;
  /** The client whose every start also passes the shared start log (a runner among several). */
  let ledPartnerClient: PartnerClient | null = null;
  const partnerFromConfig = (led?: Leadership): PartnerPort | null => {
    if (config.phase !== 4) return null;
    if (led) {
      if (ledPartnerClient === null) {
        const client = createPartnerClientFromConfig(config, clock, {}, led.startLimiter);
        releasers.add(quietly(() => client.close()));
        ledPartnerClient = client;
      }
      return ledPartnerClient;
    }
    if (partnerClient === null) {
      const client = createPartnerClientFromConfig(config, clock);
      releasers.add(quietly(() => client.close()));
      partnerClient = client;
    }
    return partnerClient;
  };
  let runnerLeadership: Leadership | null = null;
  const leadership = (): Leadership => {
    runnerLeadership ??= createLeadership({
      store,
      audit,
      clock,
      sleep: systemSleep,
      logger,
      name: config.runnerName,
      leaseMs: config.policy.heartbeatIntervalSeconds * 1000,
      takeoverWaitMs: config.policy.apiTimeoutSeconds * 1000 + TAKEOVER_MARGIN_MS,
      starts: {
        ...limiterShape(config.limits.rateLimitPerSecond, config.policy.rateWindowMs),
        marginMs: DEFAULT_RATE_MARGIN_MS,
        // The request's own deadline starts a moment after its grant commits: a second of slack.
        maxRequestMs: config.policy.apiTimeoutSeconds * 1000 + START_DEADLINE_SLACK_MS,
      },
    });
    return runnerLeadership;
  };

  const alerts = createAlertRecorder({
    clock,
    channels: configuredChannels(config.alerts),
    dedupWindowMs: config.policy.alertDedupMinutes * 60_000,
  });
  const requestMonitor = createRequestMonitor({ config, audit, alerts, clock });
  let channels: AlertChannel[] | null = null;
  const alertChannels = (): AlertChannel[] => {
    if (channels !== null) return channels;
    const created = createAlertChannels(config.alerts);
    releasers.add(async () => {
      for (const channel of created) await channel.close().catch(() => undefined);
      if (channels === created) channels = null;
    });
    channels = created;
    return created;
  };
  const limits = createLimitsInForce({
    store,
    audit,
    alerts,
    config,
    onChange(taken) {
      partnerClient?.setRateLimit(taken.rateLimitPerSecond);
      ledPartnerClient?.setRateLimit(taken.rateLimitPerSecond);
      runnerLeadership?.reshapeStarts(limiterShape(taken.rateLimitPerSecond, config.policy.rateWindowMs));
    },
  });
  // The gates module's answer, from the evidence and the signatures; there is no bypass.
  // The gates judge the limits this process runs with now (a worker's may have changed since start).
  const gates = createGateClearance({
    store,
    config,
    audit,
    clock,
    ...(config.phase === 4 ? { limits: limits.current } : {}),
  });

  let uploads: UploadIngester | null = null;
  const uploadIngester = (): UploadIngester => {
    if (uploads === null) {
      const created = createUploadIngester({ config, clock, logger });
      releasers.add(quietly(() => created.close()));
      uploads = created;
    }
    return uploads;
  };
  return {
    config,
    clock,
    logger,
    store,
    audit,
    releasers,
    requirePseudonymizer,
    ingestDeps,
    alerts,
    requestMonitor,
    alertChannels,
    limits,
    gates,
    partnerFromConfig,
    leadership,
    uploadIngester,
    ahead: (commit) => (uploads ? uploads.ahead(commit) : commit()),
  };
}
