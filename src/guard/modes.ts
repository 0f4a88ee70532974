import type { AlertRecorder } from '../alerts/index.js';
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import {
  MODES,
  type Mode,
  type ModeChange,
  type ModeCommand,
  modeAction,
  planModeChange,
} from '../policy/index.js';
import type { Executor, StoreTransaction } from '../store/index.js';

export type { Mode };

import { getRuntimeValue, getRuntimeValues, lockRuntimeValue, setRuntimeValue } from '../store/index.js';

const MODE_KEY = 'mode';
const GO_LIVE_KEY = 'go_live_at';

/** The mode in force; `live` until an operator or a monitor moves it down. */
export async function readMode(db: Executor): Promise<Mode> {
  const value = await getRuntimeValue(db, MODE_KEY);
  if (value === undefined) return 'live';
  // An unknown value fails closed: nothing is sent in a mode this release does not know.
  return (MODES as readonly string[]).includes(value) ? (value as Mode) : 'rolled_back';
}

export async function writeMode(db: Executor, mode: Mode, now: number): Promise<void> {
  await setRuntimeValue(db, MODE_KEY, mode, now);
}

/** When Phase 4 first started (the ramp's clock), or null. */
export async function readGoLiveAt(db: Executor): Promise<number | null> {
  const value = await getRuntimeValue(db, GO_LIVE_KEY);
  return value === undefined ? null : Number(value);
}

export async function writeGoLiveAt(db: Executor, at: number): Promise<void> {
  await setRuntimeValue(db, GO_LIVE_KEY, String(at), at);
}

const MODE_CHANGED_AT_KEY = 'mode_changed_at';
/** The audit entry of the last mode change: workers acknowledge changes by it. */
const MODE_CHANGE_SEQ_KEY = 'mode_change_seq';
/** Where the error-rate window starts at the earliest: set by a re-arm. */
export const ERROR_WINDOW_SINCE_KEY = 'error_rate_window_since';

/** When the mode last changed (a rollback's time, for `rearm`), or null. */
export async function readModeChangedAt(db: Executor): Promise<number | null> {
  const value = await getRuntimeValue(db, MODE_CHANGED_AT_KEY);
  return value === undefined ? null : Number(value);
}

/** The mode in force and the change that set it (null before the first change), for the mode watch. */
export async function readModeChange(
  db: Executor,
): Promise<{ mode: Mode; changeSeq: number | null; changedAt: number | null }> {
  const values = await getRuntimeValues(db, [MODE_KEY, MODE_CHANGE_SEQ_KEY, MODE_CHANGED_AT_KEY]);
  const raw = values.get(MODE_KEY);
  const seq = values.get(MODE_CHANGE_SEQ_KEY);
  const at = values.get(MODE_CHANGED_AT_KEY);
  return {
    mode:
      raw === undefined ? 'live' : (MODES as readonly string[]).includes(raw) ? (raw as Mode) : 'rolled_back',
    changeSeq: seq === undefined ? null : Number(seq),
    changedAt: at === undefined ? null : Number(at),
  };
}

export interface ModeChangeRequest {
  command: ModeCommand;
  /** Who: an operator's name, or `monitor` / `supervisor` for automatic triggers. */
  actor: string;
  reason: string;
  /** Figures behind an automatic trigger (the error-rate decision, the heartbeat age), audited. */
  evidence?: Record<string, unknown>;
}

/**
 * Apply a mode command in the caller's transaction: the audit entry and the alert are committed
 * with the change, before the change has any effect.
 */
export async function changeMode(
  trx: StoreTransaction,
  deps: { audit: AuditLog; alerts: AlertRecorder; clock: Clock },
  request: ModeChangeRequest,
): Promise<ModeChange & { changeSeq?: number }> {
  // Write before reading: two changes at once are applied one after the other, the second seeing the first.
  await lockRuntimeValue(trx, MODE_KEY);
  const current = await readMode(trx);
  const plan = planModeChange(current, request.command);
  if (plan.kind !== 'change') return plan;
  const now = deps.clock.now();
  const [entry] = await deps.audit.append(trx, {
    actor: request.actor,
    action: modeAction(request.command),
    details: { from: plan.from, to: plan.to, reason: request.reason, ...(request.evidence ?? {}) },
  });
  await writeMode(trx, plan.to, now);
  await setRuntimeValue(trx, MODE_CHANGED_AT_KEY, String(now), now);
  if (entry) await setRuntimeValue(trx, MODE_CHANGE_SEQ_KEY, String(entry.seq), now);
  if (request.command === 'rearm') await setRuntimeValue(trx, ERROR_WINDOW_SINCE_KEY, String(now), now);
  await deps.alerts.raise(trx, {
    event: request.command === 'rollback' ? 'rollback' : 'mode_change',
    // Every change is its own alert (keyed by its audit entry): never folded into an earlier one.
    dedupKey: `mode:${entry?.seq ?? now}`,
    message:
      request.command === 'rollback'
        ? `ROLLED BACK by ${request.actor}: ${request.reason}. Outbound stopped; the worker continues as a dry run; the queue is kept.`
        : `mode ${plan.from} → ${plan.to} by ${request.actor}: ${request.reason}`,
    details: { from: plan.from, to: plan.to, actor: request.actor, ...(request.evidence ?? {}) },
  });
  return entry ? { ...plan, changeSeq: entry.seq } : plan;
}
