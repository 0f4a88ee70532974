import type { Insertable } from 'kysely';
import type { Executor } from './executor.js';
import type { Heartbeat, HeartbeatsTable, RequestClass, RequestOutcome } from './schema.js';

// ---- requests: one row per outbound request to the leads endpoint ----

export async function recordRequest(
  db: Executor,
  request: {
    at: number;
    endpoint: 'leads' | 'health' | 'token';
    deliveryId: number | null;
    attempt: number | null;
    outcome: RequestOutcome;
    status: number | null;
    class: RequestClass;
    ms: number;
  },
): Promise<void> {
  await db
    .insertInto('requests')
    .values({
      at: request.at,
      endpoint: request.endpoint,
      delivery_id: request.deliveryId,
      attempt: request.attempt,
      outcome: request.outcome,
      status: request.status,
      class: request.class,
      ms: Math.round(request.ms),
    })
    .execute();
}

/** The counted requests (429s excluded) since `since`, oldest first: the error-rate window. */
export async function countedRequestsSince(
  db: Executor,
  since: number,
): Promise<{ at: number; failed: boolean }[]> {
  const rows = await db
    .selectFrom('requests')
    .select(['at', 'class'])
    .where('at', '>=', since)
    .where('class', '!=', 'excluded')
    .orderBy('id')
    .execute();
  return rows.map((r) => ({ at: r.at, failed: r.class === 'failure' }));
}

export async function countFailuresSince(db: Executor, since: number): Promise<number> {
  const row = await db
    .selectFrom('requests')
    .select((eb) => eb.fn.countAll<string | number>().as('n'))
    .where('at', '>=', since)
    .where('class', '=', 'failure')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Requests ever made, by outcome and HTTP status (for the metrics). */
export async function requestTotals(db: Executor): Promise<
  {
    endpoint: 'leads' | 'health' | 'token';
    outcome: RequestOutcome;
    class: RequestClass;
    status: number | null;
    n: number;
  }[]
> {
  const rows = await db
    .selectFrom('requests')
    .select(['endpoint', 'outcome', 'class', 'status', (eb) => eb.fn.countAll<string | number>().as('n')])
    .groupBy(['endpoint', 'outcome', 'class', 'status'])
    .execute();
  return rows.map((r) => ({
    endpoint: r.endpoint,
    outcome: r.outcome,
    class: r.class,
    status: r.status === null ? null : Number(r.status),
    n: Number(r.n),
  }));
}

/** Every request the outbound client recorded in [from, until] (leads, health, token), oldest first. */
export async function requestsBetween(
  db: Executor,
  from: number,
  until: number,
): Promise<{ at: number; endpoint: 'leads' | 'health' | 'token' }[]> {
  return db
    .selectFrom('requests')
    .select(['at', 'endpoint'])
    .where('at', '>=', from)
    .where('at', '<=', until)
    .orderBy('at')
    .execute();
}

// ---- heartbeats ----

export async function recordHeartbeat(db: Executor, beat: Insertable<HeartbeatsTable>): Promise<void> {
  await db.insertInto('heartbeats').values(beat).execute();
}

export async function latestHeartbeat(db: Executor): Promise<Heartbeat | undefined> {
  const row = await db.selectFrom('heartbeats').selectAll().orderBy('id', 'desc').limit(1).executeTakeFirst();
  return row;
}

/** Heartbeats with `from <= at < to`, oldest first (stability verification reads 72 h of them). */
export async function heartbeatsBetween(db: Executor, from: number, to: number): Promise<Heartbeat[]> {
  return db
    .selectFrom('heartbeats')
    .selectAll()
    .where('at', '>=', from)
    .where('at', '<', to)
    .orderBy('at')
    .execute();
}
