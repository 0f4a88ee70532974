import type { AlertRecorder } from '../alerts/index.js';
import type { AuditLog } from '../audit/index.js';
import type { Clock, Sleep } from '../clock/index.js';
import type { Config } from '../config/index.js';
import type { Guard } from '../guard/index.js';
import type { Logger } from '../log/index.js';
import type { RequestMonitor } from '../monitor/index.js';
import type { Pseudonymizer } from '../pii/index.js';
import type { Lead, Store, StoreTransaction } from '../store/index.js';
import { type Leadership, NotLeader } from './leadership.js';
import type { PartnerPort } from './partner-port.js';

export interface EngineDeps {
  config: Config;
  store: Store;
  audit: AuditLog;
  clock: Clock;
  sleep: Sleep;
  logger: Logger;
  pseudonymizer: Pseudonymizer;
  guard: Guard;
  /** The partner client; null in Phase 3, where no socket to the partner is ever opened. */
  partner: PartnerPort | null;
  alerts: AlertRecorder;
  /** Records each request's outcome and rolls back when the error rate says so. */
  monitor: RequestMonitor;
  /**
   * Several runners on one database: every claim, authorisation and recovery first locks the lease
   * and checks this runner still holds it (src/engine/leadership.ts). Absent: one runner, unfenced.
   */
  leadership?: Pick<Leadership, 'holds'> | null | undefined;
  /** The limits in force now (lowered while the service runs); default the configuration's. */
  limits?: () => Config['limits'];
}

/** What every step of the engine is handed first: its dependencies and the few rules derived from them. */
export interface EngineContext extends EngineDeps {
  leadership: Pick<Leadership, 'holds'> | null;
  policy: Config['policy'];
  /** A token must outlive a whole attempt: the request's timeout plus margin. */
  tokenValidForMs: number;
  /** Inside a transaction: this runner still leads (always, with one runner). Locks the lease. */
  leads(trx: StoreTransaction): Promise<boolean>;
  /** Inside a transaction: throws NotLeader unless this runner still leads. */
  mustLead(trx: StoreTransaction, what: string): Promise<void>;
  /** The leads as the audit chain names them: id and keyed pseudonym, no PII. */
  pseudonyms(leads: Lead[]): { lead: number; pseudonym: string }[];
}

export function createEngineContext(deps: EngineDeps): EngineContext {
  const leadership = deps.leadership ?? null;
  const leads = (trx: StoreTransaction) => (leadership ? leadership.holds(trx) : Promise.resolve(true));
  return {
    ...deps,
    leadership,
    policy: deps.config.policy,
    tokenValidForMs: deps.config.policy.apiTimeoutSeconds * 1000 * 2 + 10_000,
    leads,
    async mustLead(trx, what) {
      if (!(await leads(trx))) throw new NotLeader(`${what}: this runner no longer leads; nothing changed`);
    },
    pseudonyms: (batch) =>
      batch.map((l) => ({ lead: l.id, pseudonym: deps.pseudonymizer.pseudonym(l.dedup_key) })),
  };
}
