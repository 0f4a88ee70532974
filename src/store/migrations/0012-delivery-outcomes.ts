import { type Kysely, type Migration, sql } from 'kysely';

/**
 * What the partner said about a batch key, counted apart (README "Delivery outcomes"):
 *
 * - `failed_answers`: requests the partner ANSWERED with a failure for this key (a 5xx, a 408, a 401).
 *   These spend the policy's retries (1 + 3 attempts).
 * - `unanswered`: requests that got no answer (the process killed mid-request, a timeout, a reset or a
 *   refused connection). The partner may hold the batch, so the same key is asked again: such a replay
 *   cannot duplicate and does not spend a retry. A separate bound per key stops an endless loop.
 *
 * - `partner_may_have`: 1 when a quarantined batch's last request got no answer: the partner may hold
 *   it, so a release replays its original key instead of sending its leads under a new one.
 *
 * `attempts` stays the count of requests authorised (the audit's attempt numbers). Batches already
 * stored that are not finished (queued, sending, waiting, quarantined) get their counts from the request
 * log (finished ones need none: the log is scanned once per such batch); a batch caught `sending` by
 * the upgrade is counted when recovery resends it.
 */
export function deliveryOutcomes(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await sql
        .raw('alter table deliveries add column failed_answers integer not null default 0')
        .execute(db);
      await sql.raw('alter table deliveries add column unanswered integer not null default 0').execute(db);
      await sql.raw('create index requests_delivery on requests (delivery_id)').execute(db);
      await sql
        .raw('alter table deliveries add column partner_may_have integer not null default 0')
        .execute(db);
      await sql
        .raw(
          `update deliveries set failed_answers = (
             select count(*) from requests r
             where r.delivery_id = deliveries.id and r.endpoint = 'leads'
               and r.status is not null and r.status <> 429 and r.outcome <> 'accepted'
           ), unanswered = (
             select count(*) from requests r
             where r.delivery_id = deliveries.id and r.endpoint = 'leads'
               and r.status is null and r.outcome = 'retryable'
           )
           where kind = 'live' and state in ('queued', 'sending', 'retry_wait', 'quarantined')`,
        )
        .execute(db);
      // Quarantined before this release because a request was interrupted: the partner may have it.
      await sql
        .raw(
          `update deliveries set partner_may_have = 1
           where state = 'quarantined' and (unanswered > 0 or last_outcome = 'interrupted' or (last_status is null and last_outcome in ('retryable', 'permanent')))`,
        )
        .execute(db);
    },
  };
}
