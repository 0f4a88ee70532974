import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Logger } from '../log/index.js';
import type { Pseudonymizer } from '../pii/index.js';
import {
  fillIdentityKeysPage,
  finishIdentityKeysFill,
  getRuntimeValue,
  IDENTITY_KEYS_FILL,
  type IdentityKeysOf,
  type LeadIdentity,
  type SharedIdentity,
  type Store,
} from '../store/index.js';

/** Leads per transaction of the fill: each page holds the leads' write lock for milliseconds. */
const FILL_PAGE = 500;
/** Pairs of leads sharing an identity named in the audit entry (all are counted). */
const SHARED_LISTED = 100;

/**
 * Leads stored before migration 0013 get their identity keys (the keyed hashes of their e-mail and
 * external id), once, at the first start of this release that holds the secret: the migration cannot
 * compute them. Until then ingest cannot run either (it needs the secret too), so no lead is ever
 * checked against a store whose keys are missing. Done page by page (a start interrupted part-way
 * keeps the pages it did; the next one walks the leads again and fills what is left), then audited
 * once, with the leads an earlier lead already shared an identity with: stored twice before a lead
 * was a duplicate under either identity. They are left as they are (the earlier one keeps the key);
 * the entry and the log name them by id. The entry also counts which identity the stored leads were
 * keyed by: leads keyed by another rule than the recorded one are warned about in the log.
 */
export async function fillIdentityKeysIfPending(deps: {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  pseudonymizer: Pseudonymizer;
  operator: string;
  /** The installation's dedup rule (recorded): leads keyed by the other one are named in the log. */
  rule: LeadIdentity;
}): Promise<void> {
  const { store, audit, clock, logger, pseudonymizer } = deps;
  if ((await getRuntimeValue(store.db, IDENTITY_KEYS_FILL)) !== 'pending') return;
  const keysOf: IdentityKeysOf = (lead) => ({
    emailKey: pseudonymizer.dedupKey('email', lead.email),
    externalIdKey: lead.external_id === null ? null : pseudonymizer.dedupKey('external_id', lead.external_id),
  });
  let afterId = 0;
  let filled = 0;
  const shared: SharedIdentity[] = [];
  const keyedBy = { email: 0, external_id: 0, unknown: 0 };
  for (;;) {
    const page = await store.db
      .transaction()
      .execute((trx) => fillIdentityKeysPage(trx, store.dialect, { afterId, limit: FILL_PAGE, keysOf }));
    filled += page.filled;
    shared.push(...page.shared);
    for (const kind of ['email', 'external_id', 'unknown'] as const) keyedBy[kind] += page.keyedBy[kind];
    if (page.lastId === null) break;
    afterId = page.lastId;
  }
  const finished = await store.db.transaction().execute(async (trx) => {
    if (!(await finishIdentityKeysFill(trx, clock.now()))) return false;
    await audit.append(trx, {
      actor: deps.operator,
      action: 'leads.identity_keys_filled',
      details: {
        leads: filled,
        keyedBy,
        rule: deps.rule,
        shared: shared.length,
        sharedLeads: shared.slice(0, SHARED_LISTED),
        reason:
          'leads stored before a lead was a duplicate under either identity (its e-mail or its external id) got both identity keys',
      },
    });
    return true;
  });
  if (!finished) return;
  logger.info({ leads: filled, keyedBy }, 'identity keys filled for the leads stored before this release');
  const other = deps.rule === 'email' ? 'external_id' : 'email';
  if (keyedBy[other] > 0) {
    // Not an error (they are duplicates under either identity now), but the rule recorded may not be
    // the one the installation ran with: the operator should know before anything is exported.
    logger.warn(
      { keyedBy, rule: deps.rule },
      `${keyedBy[other]} of the leads stored before this release were keyed by ${other}, not by the recorded dedup rule ${deps.rule}`,
    );
  }
  if (shared.length > 0) {
    logger.warn(
      { shared: shared.length, sharedLeads: shared.slice(0, SHARED_LISTED) },
      'leads stored before this release share an e-mail or external id with an earlier lead: they were stored twice before the rule; left as they are',
    );
  }
}
