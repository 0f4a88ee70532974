import { existsSync } from 'node:fs';
import {
  type AlertChannel,
  configuredChannels,
  createAlertChannels,
  createAlertDispatcher,
  createAlertRecorder,
  sendTestAlert,
} from '../alerts/index.js';
import { createAuditLog } from '../audit/index.js';
import { systemClock, systemSleep } from '../clock/index.js';
import { changeOperatorMode, checkPolicyChange, createLimitsInForce } from '../control/index.js';
import {
  createEngine,
  createLeadership,
  createOperatorActions,
  type Leadership,
  type PartnerPort,
} from '../engine/index.js';
import { ensurePrivateDir } from '../files/index.js';
import { buildGatesBundle, buildManifest, createGateClearance, evaluateGates } from '../gates/index.js';
import { createGuard } from '../guard/index.js';
import { type IngestDeps, ingestFile } from '../ingest/index.js';
import { createLogger } from '../log/index.js';
import { createMetrics, createRequestMonitor } from '../monitor/index.js';
import { DEFAULT_RATE_MARGIN_MS, limiterShape } from '../outbound/index.js';
import { createPseudonymizer, type Pseudonymizer } from '../pii/index.js';
import { alertDeliveries, openStore, readInstallationId, recentAlerts } from '../store/index.js';
import { listMaskedLeads, readRunState, readStatus } from '../views/index.js';
import { AppError } from './errors.js';
import { ingestDepsOf } from './ingest-deps.js';
import { checkInstallation } from './installation-checks.js';
import { awaitModeAck } from './mode-ack.js';
import { createPartnerClientFromConfig, type PartnerClient } from './partner.js';
import { createReleasers } from './releasers.js';
import { archiveSyntheticLeads, loadSyntheticLeadsIfEmpty } from './synthetic.js';
import type { App, OpenAppOptions } from './types.js';
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

/** Build the object graph from the configuration: the only place that knows every module. */
export async function openApp(options: OpenAppOptions): Promise<App> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger({ level: config.logLevel, file: config.logFile });
  const releasers = createReleasers();
  releasers.add(() => logger.flush());
  // The data folder holds PII (the database, rejects files): 0700, tightened if an older release or a
  // loose umask left it open; the database's own files are tightened as the store opens.
  const tightened = existsSync(config.dataDir) ? [ensurePrivateDir(config.dataDir)] : [];
  const store = await openStore(config.database);
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
    await store.close();
    throw error;
  }
  releasers.add(() => store.close());

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
  /** Phase 4 only: in Phase 3 no partner client exists, so no socket to the partner can be opened. */
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
  const views = { store, clock, config, requestMonitor };
  return {
    config,
    clock,
    logger,
    store,
    audit,
    ingest: (ingestOptions) => ingestFile(ingestDeps(), ingestOptions),
    ingestUpload(upload) {
      requirePseudonymizer();
      return uploadIngester().ingest(upload);
    },
    status: () => readStatus(views),
    listLeads: (listOptions) =>
      listMaskedLeads({ store, pseudonymizer: requirePseudonymizer() }, listOptions),
    runState: () => readRunState(views),
    engine(engineOptions = {}) {
      const p = requirePseudonymizer();
      const partner =
        engineOptions.partner !== undefined
          ? engineOptions.partner
          : partnerFromConfig(engineOptions.leadership);
      const guard = createGuard({
        config,
        audit,
        clock,
        pseudonymizer: p,
        gates: engineOptions.gates ?? gates,
        limits: limits.current,
      });
      return createEngine({
        config,
        store,
        audit,
        clock,
        sleep: engineOptions.sleep ?? systemSleep,
        logger,
        pseudonymizer: p,
        guard,
        partner,
        alerts,
        monitor: requestMonitor,
        leadership: engineOptions.leadership ?? null,
        limits: limits.current,
      });
    },
    leadership() {
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
    },
    gates,
    gatesReport: () => evaluateGates({ store, config, audit, clock }),
    gatesBundle: () => buildGatesBundle({ store, config, audit, clock }),
    async releaseManifest() {
      const id = await readInstallationId(store.db);
      return id === undefined ? null : buildManifest(config, id);
    },
    alerts,
    alertChannels,
    dispatchAlerts: () =>
      createAlertDispatcher({ store, clock, logger, channels: alertChannels() }).dispatchDue(),
    sendTestAlert: () =>
      sendTestAlert({ store, audit, clock, channels: alertChannels(), operator: config.operator }),
    async recentAlerts(limit) {
      const rows = await recentAlerts(store.db, limit);
      return Promise.all(
        rows.map(async (a) => ({ ...a, deliveries: await alertDeliveries(store.db, a.id) })),
      );
    },
    requestMonitor,
    metrics: (worker) => createMetrics({ store, config, clock, ...(worker ? { worker } : {}) }),
    checkPolicy: (source) => checkPolicyChange({ store, audit, alerts, clock, config }, source),
    limitsInForce: limits.current,
    reloadLimits: limits.reload,
    changeMode: (command, request) =>
      changeOperatorMode(
        {
          store,
          audit,
          alerts,
          clock,
          config,
          gates,
          // Ahead of an upload being stored in this process (upload-ingest.ts): a stop never queues behind it.
          ahead: (commit) => (uploads ? uploads.ahead(commit) : commit()),
        },
        command,
        request,
      ),
    pseudonymizer: requirePseudonymizer,
    awaitModeAck: (request) => awaitModeAck({ store, clock, sleep: systemSleep, config }, request),
    archiveSyntheticLeads: () => archiveSyntheticLeads({ store, audit, clock, config }),
    loadSyntheticLeadsIfEmpty: (count) =>
      loadSyntheticLeadsIfEmpty({ store, clock, config, ingestDeps }, count),
    operatorActions: (actor) =>
      createOperatorActions({
        store,
        audit,
        clock,
        operator: actor ?? config.operator,
        pseudonymizer: requirePseudonymizer(),
      }),
    close: () => releasers.releaseAll(),
  };
}
