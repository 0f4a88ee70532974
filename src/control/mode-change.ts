import type { AlertRecorder } from '../alerts/index.js';
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { changeMode, type GateClearance, readMode } from '../guard/index.js';
import { REASON_WITHHELD, refuseContactData } from '../pii/index.js';
import type { ModeChange, ModeCommand } from '../policy/index.js';
import type { Store } from '../store/index.js';
import { rearmRefusal } from './rearm.js';

export type OperatorModeChange = ModeChange & { reasonWithheld?: string; changeSeq?: number };

/**
 * pause / resume / rollback / rearm by an operator, audited and alerted. `rearm` also needs Phase 4,
 * the gates cleared, and no worker left running from before the rollback (rearm.ts).
 */
export async function changeOperatorMode(
  deps: {
    store: Store;
    audit: AuditLog;
    alerts: AlertRecorder;
    clock: Clock;
    config: Config;
    gates: GateClearance;
    /** Runs the commit ahead of whatever else this process is storing (an upload): a stop never queues. */
    ahead: <T>(commit: () => Promise<T>) => Promise<T>;
  },
  command: ModeCommand,
  request: { actor?: string; reason: string; gates?: GateClearance },
): Promise<OperatorModeChange> {
  const { store, audit, alerts, clock, config } = deps;
  const actor = request.actor ?? config.operator;
  // The reason is kept for good in the audit chain. A stop (pause, rollback) is never held up by
  // its wording: it is made with the reason withheld, and the caller is told. Anything else is refused.
  const contactData = refuseContactData(request.reason, 'the reason');
  let reason = request.reason;
  if (contactData !== null) {
    if (command !== 'pause' && command !== 'rollback') {
      return { kind: 'refused', mode: await readMode(store.db), reason: contactData };
    }
    reason = REASON_WITHHELD;
  }
  if (command === 'rearm') {
    const refusal = await rearmRefusal({ store, clock, config }, request.gates ?? deps.gates);
    if (refusal !== null) {
      await audit.record({ actor, action: 'mode.rearm_refused', details: { reason: refusal } });
      return { kind: 'refused', mode: await readMode(store.db), reason: refusal };
    }
  }
  const change = await deps.ahead(() =>
    store.db
      .transaction()
      .execute((trx) => changeMode(trx, { audit, alerts, clock }, { command, actor, reason })),
  );
  return contactData === null ? change : { ...change, reasonWithheld: contactData };
}
