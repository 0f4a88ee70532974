import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config, DedupKeyKind } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { getRuntimeValue, INITIALIZED_KEY, insertRuntimeValueIfAbsent, type Store } from '../store/index.js';
import { AppError } from './errors.js';

/**
 * The runtime_state key holding the installation's dedup rule (`email` or `external_id`). The rule
 * names a lead's primary identity: what its dedup key, pseudonym and lead key are made from, and
 * whether an external id is required. It is chosen once, at `valhalla init`: a command run with
 * another would key new leads by another identity than the stored ones, so it is refused.
 */
export const DEDUP_RULE_KEY = 'dedup.rule';

const RULES: readonly DedupKeyKind[] = ['email', 'external_id'];

/**
 * Check this process's dedup rule (VALHALLA_DEDUP_KEY) against the one the installation recorded;
 * a different one is refused (AppError DEDUP_RULE_CHANGED, the CLI's exit 3) before the command
 * does anything. With none recorded yet, this process's rule is recorded:
 *
 * - in a store `valhalla init` is creating (not initialised yet), quietly: init's
 *   `system.initialized` audit entry names it;
 * - in an installation made before the rule was recorded, with a `dedup.rule_recorded` audit entry
 *   and a warning in the log: the rule is the one of the first command that opens it after the upgrade.
 *
 * Two processes recording at once: one writes, the other reads what it wrote and is checked against it.
 */
export async function checkDedupRule(deps: {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  config: Config;
}): Promise<void> {
  const { store, audit, clock, logger, config } = deps;
  const running = config.dedupKey;
  const recorded = await getRuntimeValue(store.db, DEDUP_RULE_KEY);
  if (recorded !== undefined) {
    if (recorded !== running)
      throw new AppError('DEDUP_RULE_CHANGED', describeRuleMismatch(recorded, config));
    return;
  }
  const initialized = (await getRuntimeValue(store.db, INITIALIZED_KEY)) !== undefined;
  const source = ruleSource(config);
  const wrote = await store.db.transaction().execute(async (trx) => {
    // A write first (SQLite: it takes the write lock); it decides who records the rule.
    const inserted = await insertRuntimeValueIfAbsent(trx, DEDUP_RULE_KEY, running, clock.now());
    if (inserted && initialized) {
      await audit.append(trx, {
        actor: config.operator,
        action: 'dedup.rule_recorded',
        details: {
          rule: running,
          source,
          reason:
            'an installation from before the dedup rule was recorded: the rule of the first command that opened it after the upgrade',
        },
      });
    }
    return inserted;
  });
  // Recorded by another process meanwhile: checked against what it recorded.
  if (!wrote) return checkDedupRule(deps);
  if (initialized) {
    logger.warn(
      { rule: running, source },
      `dedup rule recorded for this installation: ${running} (${source}); every later command must run with it`,
    );
  }
}

/** Where this process's rule comes from, in words. */
function ruleSource(config: Config): string {
  switch (config.sources.VALHALLA_DEDUP_KEY) {
    case 'environment':
      return 'VALHALLA_DEDUP_KEY from the environment';
    case '.env':
      return `VALHALLA_DEDUP_KEY in ${envFileName(config)}`;
    default:
      return 'the default: VALHALLA_DEDUP_KEY is not set';
  }
}

const envFileName = (config: Config) => config.raw.VALHALLA_ENV_FILE ?? '.env';

/**
 * The refusal: both rules, where the running one came from, and the fix. Exported for its test.
 * `recorded` is what the database holds (an unknown value is named as it is: a newer release's, or an edit).
 */
export function describeRuleMismatch(recorded: string, config: Config): string {
  const running = config.dedupKey;
  const source = config.sources.VALHALLA_DEDUP_KEY;
  let fix: string;
  if (!(RULES as readonly string[]).includes(recorded)) {
    fix = 'this release knows only email and external_id: run the release that recorded it';
  } else if (source === 'environment') {
    fix =
      recorded === 'email'
        ? 'unset VALHALLA_DEDUP_KEY (email is the default) or set it to email'
        : `set VALHALLA_DEDUP_KEY=${recorded} in the environment`;
  } else if (source === '.env') {
    fix =
      recorded === 'email'
        ? `remove VALHALLA_DEDUP_KEY from ${envFileName(config)} (email is the default) or set it to email there`
        : `set VALHALLA_DEDUP_KEY=${recorded} in ${envFileName(config)}`;
  } else {
    fix = `set VALHALLA_DEDUP_KEY=${recorded} (in the environment or ${envFileName(config)})`;
  }
  return (
    `refused: this installation deduplicates by ${recorded} (the dedup rule recorded in its database), ` +
    `but this command runs with ${running} (${ruleSource(config)}). The rule is fixed per installation: ` +
    `leads keyed by another identity would not match the stored ones. Nothing was done. To fix: ${fix}.`
  );
}
