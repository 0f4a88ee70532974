import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import { maskEmail, maskName, type Pseudonymizer, refuseContactData } from '../pii/index.js';
import type { StoreTransaction } from '../store/index.js';
import {
  confirmCycle,
  type Delivery,
  deliveryLeads,
  lastLiveCycle,
  leadsWithIds,
  quarantinedLeads,
  releaseFromDeliveries,
  replayableDeliveries,
  type Store,
  setLeadsState,
} from '../store/index.js';
import { planMove, recordMove } from './lifecycle.js';
import { payloadSha256 } from './payload.js';

/** Operator actions on the queue, each audited in the transaction that makes it. */
export interface OperatorActions {
  /** Stage 1 of the ramp: confirm the latest live cycle so the next may run. */
  confirmCycle(cycleId?: number): Promise<{ confirmed: number }>;
  /**
   * Quarantined → pending; its retries start again at 0 in a new batch (the lead keeps its own key).
   * A batch the partner may hold (its last request went unanswered) is not split up: it is asked again
   * under its ORIGINAL key, all its leads together, so the partner answers with what it has.
   */
  release(leadIds: number[], reason: string): Promise<QuarantineResult>;
  /** Quarantined → archived: never sent. */
  drop(leadIds: number[], reason: string): Promise<QuarantineResult>;
  /** Quarantined leads, masked, newest first, with their reasons. */
  quarantined(limit: number, beforeId?: number): Promise<QuarantinedLead[]>;
}

export interface QuarantinedLead {
  id: number;
  name: string;
  email: string;
  score: number;
  reason: string | null;
}

export interface QuarantineResult {
  changed: number[];
  /** Ids that were not quarantined (left as they are). */
  skipped: number[];
}

export class OperatorError extends Error {
  override readonly name = 'OperatorError';
  constructor(
    readonly code:
      | 'NOTHING_TO_CONFIRM'
      | 'ALREADY_CONFIRMED'
      | 'NOT_QUARANTINED'
      | 'CONTACT_DATA_IN_REASON'
      | 'WHOLE_BATCH'
      | 'BATCH_CHANGED',
    message: string,
  ) {
    super(message);
  }
}

export function createOperatorActions(deps: {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  operator: string;
  pseudonymizer: Pseudonymizer;
}): OperatorActions {
  const { store, audit, clock, operator, pseudonymizer } = deps;

  async function changeQuarantined(
    leadIds: number[],
    to: 'pending' | 'archived',
    reason: string,
  ): Promise<QuarantineResult> {
    const contactData = refuseContactData(reason, 'the reason');
    if (contactData !== null) throw new OperatorError('CONTACT_DATA_IN_REASON', contactData);
    return store.db.transaction().execute(async (trx) => {
      const rows = await leadsWithIds(trx, leadIds);
      const quarantined = rows.filter((r) => r.state === 'quarantined');
      const changed = quarantined.map((r) => r.id);
      const skipped = leadIds.filter((id) => !changed.includes(id));
      if (changed.length === 0) return { changed, skipped };
      const now = clock.now();
      const replays = to === 'pending' ? await replayPlan(trx, changed) : [];
      const replayed = new Set(replays.flatMap((r) => r.leadIds));
      await audit.append(trx, {
        actor: operator,
        action: to === 'pending' ? 'quarantine.released' : 'quarantine.dropped',
        details: {
          reason,
          leads: quarantined.map((l) => ({ lead: l.id, pseudonym: pseudonymizer.pseudonym(l.dedup_key) })),
          ...(replays.length > 0
            ? {
                replayed: replays.map((r) => ({
                  batch: r.delivery.batch_key,
                  delivery: r.delivery.id,
                  leads: r.leadIds,
                })),
              }
            : {}),
        },
      });
      for (const replay of replays) {
        await recordMove(trx, replay.delivery.id, planMove(replay.delivery, { kind: 'released' }), now);
        await setLeadsState(trx, replay.leadIds, { state: 'in_flight', reason: null, now });
      }
      const rest = changed.filter((id) => !replayed.has(id));
      await setLeadsState(trx, rest, {
        state: to,
        reason: to === 'pending' ? null : `dropped from quarantine by ${operator}: ${reason}`,
        now,
      });
      if (to === 'pending') for (const id of rest) await releaseFromDeliveries(trx, id);
      return { changed, skipped };
    });
  }

  /**
   * The batches among `released` the partner may hold: each is replayed whole under its key, so every
   * one of its leads must be released together, and its content must be what the key was sent with.
   */
  async function replayPlan(trx: StoreTransaction, released: number[]) {
    const asked = new Set(released);
    const plan: { delivery: Delivery; leadIds: number[] }[] = [];
    for (const { delivery, leadIds } of await replayableDeliveries(trx, released)) {
      const leads = await deliveryLeads(trx, delivery.id);
      const gone = leads.filter((l) => l.state !== 'quarantined');
      if (gone.length > 0) {
        throw new OperatorError(
          'BATCH_CHANGED',
          `batch ${delivery.batch_key} may be held by the partner, but lead(s) ${gone.map((l) => `${l.id} (${l.state})`).join(', ')} of it are no longer quarantined: it cannot be asked again whole under its key. Check the batch with the partner, then drop the rest (valhalla quarantine drop)`,
        );
      }
      const missing = leadIds.filter((id) => !asked.has(id));
      if (missing.length > 0) {
        throw new OperatorError(
          'WHOLE_BATCH',
          `batch ${delivery.batch_key} may be held by the partner (its last request went unanswered): a release asks the partner again under that key with all ${leadIds.length} of its leads; release ${leadIds.join(',')} together (missing: ${missing.join(', ')})`,
        );
      }
      if (payloadSha256(delivery.batch_key, leads) !== delivery.payload_sha256) {
        throw new OperatorError(
          'BATCH_CHANGED',
          `batch ${delivery.batch_key} may be held by the partner, but its leads changed since it was sent: it cannot be asked again under its key with other content. Check the batch with the partner, then drop these leads (valhalla quarantine drop)`,
        );
      }
      plan.push({ delivery, leadIds });
    }
    return plan;
  }

  return {
    async confirmCycle(cycleId) {
      const target = cycleId ?? (await lastLiveCycle(store.db))?.id;
      if (target === undefined) throw new OperatorError('NOTHING_TO_CONFIRM', 'no live cycle to confirm');
      return store.db.transaction().execute(async (trx) => {
        const now = clock.now();
        const ok = await confirmCycle(trx, target, operator, now);
        if (!ok)
          throw new OperatorError(
            'ALREADY_CONFIRMED',
            `cycle ${target} does not exist or is already confirmed`,
          );
        await audit.append(trx, {
          actor: operator,
          action: 'cycle.confirmed',
          subject: `cycle:${target}`,
          details: { cycle: target },
        });
        return { confirmed: target };
      });
    },
    async quarantined(limit, beforeId) {
      const rows = await quarantinedLeads(store.db, limit, beforeId);
      return rows.map((l) => ({
        id: l.id,
        name: maskName(l.name),
        email: maskEmail(l.email),
        score: l.score,
        reason: l.state_reason,
      }));
    },
    release: (ids, reason) => changeQuarantined(ids, 'pending', reason),
    drop: (ids, reason) => changeQuarantined(ids, 'archived', reason),
  };
}
