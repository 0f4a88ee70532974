import { randomUUID } from 'node:crypto';
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { Pseudonymizer } from '../pii/index.js';
import {
  claimInstallationId,
  getRuntimeValue,
  INITIALIZED_KEY,
  readInstallationId,
  type Store,
  setRuntimeValue,
} from '../store/index.js';
import { checkDedupRule } from './dedup-rule.js';
import { AppError } from './errors.js';
import { fillIdentityKeysIfPending } from './identity-keys.js';

const FINGERPRINT_KEY = 'pseudonym.fingerprint';

/**
 * What every open checks before anything else runs: the pseudonym secret is the installation's, the
 * installation has its id, the dedup rule is the installation's, and the identity keys are filled.
 */
export async function checkInstallation(deps: {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  config: Config;
  pseudonymizer: Pseudonymizer | null;
  /** A stop (pause, rollback): another dedup rule is logged, not refused (a stop touches no lead). */
  stopOnly: boolean;
}): Promise<void> {
  const { store, audit, clock, logger, config, pseudonymizer } = deps;
  if (pseudonymizer !== null) await checkSecretFingerprint(store, pseudonymizer, clock);
  await identifyInstallation(store, audit, clock, config.operator);
  // The dedup rule is the installation's: a command run with another is refused here, before it
  // does anything (every command, `run` and the admin API's uploads open the app this way).
  await checkDedupRule({ store, audit, clock, logger, config }).catch((error: unknown) => {
    if (!(deps.stopOnly && error instanceof AppError && error.code === 'DEDUP_RULE_CHANGED')) throw error;
    logger.warn({ err: error }, 'another dedup rule than the installation’s: noted, the stop goes ahead');
  });
  if (pseudonymizer !== null) {
    await fillIdentityKeysIfPending({
      store,
      audit,
      clock,
      logger,
      pseudonymizer,
      operator: config.operator,
      rule: config.dedupKey,
    });
  }
}

/**
 * An installation made by a release before installation ids gets its id the first time this release
 * opens it (audited `installation.identified`); a new one gets it from `valhalla init`. A store never
 * initialised has none: the signed documents name one, so nothing can be signed for it.
 */
async function identifyInstallation(
  store: Store,
  audit: AuditLog,
  clock: Clock,
  actor: string,
): Promise<void> {
  if ((await readInstallationId(store.db)) !== undefined) return;
  if ((await getRuntimeValue(store.db, INITIALIZED_KEY)) === undefined) return;
  await store.db.transaction().execute(async (trx) => {
    const { id, claimed } = await claimInstallationId(trx, randomUUID(), clock.now());
    if (!claimed) return;
    await audit.append(trx, {
      actor,
      action: 'installation.identified',
      details: { installationId: id, why: 'installed by a release without installation ids' },
    });
  });
}

/** The secret keys every dedup key: a different secret would let every stored lead be ingested again. */
async function checkSecretFingerprint(
  store: Store,
  pseudonymizer: Pseudonymizer,
  clock: Clock,
): Promise<void> {
  const stored = await getRuntimeValue(store.db, FINGERPRINT_KEY);
  if (stored === undefined) {
    await setRuntimeValue(store.db, FINGERPRINT_KEY, pseudonymizer.fingerprint, clock.now());
  } else if (stored !== pseudonymizer.fingerprint) {
    throw new AppError(
      'SECRET_CHANGED',
      'the pseudonym secret is not the one this database was written with: dedup keys and pseudonyms would not match. Restore the original secret.',
    );
  }
}
