import type { AlertRecorder } from '../alerts/index.js';
import type { AuditLog } from '../audit/index.js';
import { type Config, MANIFEST_LIMIT_FIELDS } from '../config/index.js';
import {
  approvedLimits,
  buildManifest,
  describeLimits,
  limitsAbove,
  validSignatures,
} from '../gates/index.js';
import { canonicalJson } from '../policy/index.js';
import { readInstallationId, type Store } from '../store/index.js';

export type LimitsReload =
  | { kind: 'unchanged' }
  | { kind: 'applied'; from: Config['limits']; to: Config['limits']; message: string }
  | { kind: 'refused'; message: string };

/** The limits a process runs with now: the configuration's at start, or lower ones taken while running. */
export interface LimitsInForce {
  current(): Config['limits'];
  /**
   * Read the limits again from `load` (the environment, `.env` and the policy file as they are now):
   * a lowering (or a return up to the approved limits) is taken from the next cycle, audited
   * (`limits.changed`) and alerted; a raise above the approved limits is refused (`limits.refused`,
   * alerted once per wanted value) and the limits in force are kept.
   */
  reload(load: () => Config): Promise<LimitsReload>;
}

export function createLimitsInForce(deps: {
  store: Store;
  audit: AuditLog;
  alerts: AlertRecorder;
  config: Config;
  /** Called with the limits taken, after they were recorded: the rate limiters follow them. */
  onChange: (taken: Config['limits']) => void;
}): LimitsInForce {
  const { store, audit, alerts, config } = deps;
  let limitsInForce: Config['limits'] = config.limits;
  let lastRefusal: string | null = null;

  async function reload(load: () => Config): Promise<LimitsReload> {
    let wanted: Config['limits'];
    let sources: Config['sources'];
    try {
      ({ limits: wanted, sources } = load());
    } catch (error) {
      const message = `the configuration on disk can no longer be read (${(error as Error).message.split('\n')[0]}): the limits in force are kept`;
      if (lastRefusal === message) return { kind: 'unchanged' };
      lastRefusal = message;
      return { kind: 'refused', message };
    }
    const from = limitsInForce;
    if (canonicalJson(wanted) === canonicalJson(from)) {
      lastRefusal = null;
      return { kind: 'unchanged' };
    }
    const key = canonicalJson(wanted);
    // What may run: the limits the valid documents approve, else those the gates cleared at start.
    const id = await readInstallationId(store.db);
    const valid = id === undefined ? [] : (await validSignatures(store.db, buildManifest(config, id))).valid;
    const approved = approvedLimits(valid)?.limits ?? config.limits;
    // Each limit on its own: a lowering is taken even when another limit's raise is refused.
    const taken = { ...from };
    for (const field of MANIFEST_LIMIT_FIELDS)
      if (wanted[field] <= approved[field]) taken[field] = wanted[field];
    const above = limitsAbove(wanted, approved, sources);
    const changed = canonicalJson(taken) !== canonicalJson(from);
    // A raise already refused is said once, not every cycle while the file stays as it is (an
    // amendment recorded meanwhile lets it in at the next read).
    const repeat = above.length > 0 && lastRefusal === key;
    if (repeat && !changed) return { kind: 'unchanged' };
    const changedMessage = `limits in force from the next cycle: ${describeLimits(taken)} (were ${describeLimits(from)})`;
    const refusedMessage = `limits on disk above those approved (${above.join('; ')}): kept ${describeLimits(taken)}; a raise needs the CFO's amendment (valhalla amend), then it is taken at the next cycle`;
    // Recorded first: a change that cannot be audited is not made.
    await store.db.transaction().execute(async (trx) => {
      if (changed) {
        await audit.append(trx, {
          actor: config.operator,
          action: 'limits.changed',
          details: { from, to: taken, approved, source: 'the configuration on disk' },
        });
        await alerts.raise(trx, {
          event: 'limits_changed',
          dedupKey: `limits.changed:${canonicalJson(taken)}`,
          message: changedMessage,
        });
      }
      if (above.length > 0 && !repeat) {
        await audit.append(trx, {
          actor: config.operator,
          action: 'limits.refused',
          details: { inForce: taken, wanted, approved, above },
        });
        await alerts.raise(trx, {
          event: 'limits_refused',
          dedupKey: `limits.refused:${key}`,
          message: refusedMessage,
        });
      }
    });
    lastRefusal = above.length > 0 ? key : null;
    if (changed) {
      deps.onChange(taken);
      limitsInForce = taken;
    }
    if (above.length > 0) {
      return { kind: 'refused', message: changed ? `${changedMessage}; ${refusedMessage}` : refusedMessage };
    }
    return { kind: 'applied', from, to: taken, message: changedMessage };
  }

  return { current: () => limitsInForce, reload };
}
