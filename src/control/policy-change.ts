import type { AlertRecorder } from '../alerts/index.js';
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import { type Config, loadPolicyFile, policyHash } from '../config/index.js';
import { changeMode } from '../guard/index.js';
import { getRuntimeValue, type Store, setRuntimeValue } from '../store/index.js';

/** The policy hash the installation last ran with: a different one voids the sign-offs. */
const POLICY_HASH_KEY = 'policy.hash';

export interface PolicyCheck {
  changed: boolean;
  from: string | null;
  to: string | null;
}

/**
 * Has the policy changed since it was last recorded (this process's, or the file on disk now)? A
 * change voids every sign-off made against the old hash: audited, alerted (gate voided), and in
 * Phase 4 outbound stops (rolled back). An unreadable or invalid file on disk counts as a change.
 */
export async function checkPolicyChange(
  deps: { store: Store; audit: AuditLog; alerts: AlertRecorder; clock: Clock; config: Config },
  source: 'config' | 'disk',
): Promise<PolicyCheck> {
  const { store, audit, alerts, clock, config } = deps;
  let to: string | null = config.policyHash;
  let problem: string | null = null;
  if (source === 'disk') {
    try {
      to = policyHash(loadPolicyFile(config.policyFile));
    } catch (error) {
      to = null;
      problem = `the policy file can no longer be read or is invalid: ${(error as Error).message}`;
    }
  }
  const from = (await getRuntimeValue(store.db, POLICY_HASH_KEY)) ?? null;
  if (from === null && to !== null) {
    await setRuntimeValue(store.db, POLICY_HASH_KEY, to, clock.now());
    return { changed: false, from, to };
  }
  if (from === to) return { changed: false, from, to };
  const reason =
    problem ??
    `the policy changed (hash ${from?.slice(0, 12)}… → ${to?.slice(0, 12)}…): every sign-off made against the old policy is void`;
  await store.db.transaction().execute(async (trx) => {
    await audit.append(trx, {
      actor: 'policy',
      action: 'policy.changed',
      details: { from, to, file: config.policyFile, reason },
    });
    await alerts.raise(trx, {
      event: 'gate_voided',
      dedupKey: `policy:${to}`,
      message: `gates voided: ${reason}${config.phase === 4 ? '; outbound stopped (rolled back)' : ''}`,
      details: { from, to },
    });
    if (config.phase === 4) {
      await changeMode(trx, { audit, alerts, clock }, { command: 'rollback', actor: 'policy', reason });
    }
    if (to !== null) await setRuntimeValue(trx, POLICY_HASH_KEY, to, clock.now());
  });
  return { changed: true, from, to };
}
