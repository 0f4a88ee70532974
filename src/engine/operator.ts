import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import { maskEmail, maskName, type Pseudonymizer, refuseContactData } from '../pii/index.js';
import {
  confirmCycle,
  type Lead,
  lastLiveCycle,
  quarantinedLeads,
  releaseFromDeliveries,
  type Store,
  setLeadsState,
} from '../store/index.js';

/** Operator actions on the queue, each audited in the transaction that makes it. */
export interface OperatorActions {
  /** Stage 1 of the ramp: confirm the latest live cycle so the next may run. */
  confirmCycle(cycleId?: number): Promise<{ confirmed: number }>;
  /** Quarantined → pending; its retries start again at 0 in a new batch (the lead keeps its own key). */
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
    readonly code: 'NOTHING_TO_CONFIRM' | 'ALREADY_CONFIRMED' | 'NOT_QUARANTINED' | 'CONTACT_DATA_IN_REASON',
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
      const rows: Lead[] =
        leadIds.length === 0
          ? []
          : await trx.selectFrom('leads').selectAll().where('id', 'in', leadIds).execute();
      const quarantined = rows.filter((r) => r.state === 'quarantined');
      const changed = quarantined.map((r) => r.id);
      const skipped = leadIds.filter((id) => !changed.includes(id));
      if (changed.length === 0) return { changed, skipped };
      const now = clock.now();
      await audit.append(trx, {
        actor: operator,
        action: to === 'pending' ? 'quarantine.released' : 'quarantine.dropped',
        details: {
          reason,
          leads: quarantined.map((l) => ({ lead: l.id, pseudonym: pseudonymizer.pseudonym(l.dedup_key) })),
        },
      });
      await setLeadsState(trx, changed, {
        state: to,
        reason: to === 'pending' ? null : `dropped from quarantine by ${operator}: ${reason}`,
        now,
      });
      if (to === 'pending') for (const id of changed) await releaseFromDeliveries(trx, id);
      return { changed, skipped };
    });
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
