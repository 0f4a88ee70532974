import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import { maskEmail } from '../pii/index.js';
import { exposure } from '../policy/index.js';
import { createDelivery, type Database, type Lead } from '../store/index.js';
import type { EngineContext } from './context.js';
import { leadKey, payloadSha256 } from './payload.js';
import type { CycleContext, CycleReport } from './report.js';

export async function claimBatch(
  ctx: EngineContext,
  trx: Transaction<Database>,
  cycleId: number,
  batch: Lead[],
  report: CycleReport,
): Promise<void> {
  const { audit, clock, pseudonyms } = ctx;
  const batchKey = randomUUID();
  const now = clock.now();
  // A lead claimed meanwhile by another runner throws ClaimConflict: the whole cycle's transaction
  // rolls back and nothing is half-claimed.
  const deliveryId = await createDelivery(
    trx,
    { batchKey, cycleId, kind: 'live', payloadSha256: payloadSha256(batchKey, batch), now },
    batch.map((l) => ({ id: l.id, leadKey: leadKey(l), exposure: exposure(l) })),
  );
  await audit.append(trx, {
    actor: 'engine',
    action: 'batch.queued',
    subject: `batch:${batchKey}`,
    details: { cycle: cycleId, delivery: deliveryId, leads: pseudonyms(batch) },
  });
  report.claimed += batch.length;
  report.claimedBatches += 1;
}

export async function dryRun(
  ctx: EngineContext,
  trx: Transaction<Database>,
  context: CycleContext,
  batch: Lead[],
  report: CycleReport,
) {
  const { audit, clock, pseudonymizer, guard } = ctx;
  const batchKey = randomUUID();
  const decision = await guard.authorize(
    {
      cycleId: context.cycleId,
      deliveryId: null,
      batchKey,
      attempt: 1,
      leads: batch,
      actionsUsedThisCycle: 0,
      actionsPerCycle: context.actionsPerCycle,
      ceiling: context.ceiling,
      healthCheckPassedAt: null,
    },
    trx,
  );
  // Anything but the guard's dry-run verdict (e.g. the mode changed): record nothing, claim nothing.
  if (decision.allowed || decision.code !== 'DRY_RUN') return;
  const now = clock.now();
  const sha = payloadSha256(batchKey, batch);
  const summary = batch.map((l) => ({
    lead: l.id,
    pseudonym: pseudonymizer.pseudonym(l.dedup_key),
    email: maskEmail(l.email),
    score: l.score,
  }));
  const deliveryId = await createDelivery(
    trx,
    { batchKey, cycleId: context.cycleId, kind: 'dry_run', payloadSha256: sha, now, summary },
    batch.map((l) => ({ id: l.id, leadKey: leadKey(l), exposure: exposure(l) })),
  );
  // The chain gets pseudonyms and scores only: it cannot be edited, so even a masked e-mail (whose
  // domain may name a small company) would outlive an erasure there. The batch's summary, which
  // `leads erase` and `archive` can clear, keeps the masked e-mail for the operator.
  await audit.append(trx, {
    actor: 'engine',
    action: 'batch.dry_run',
    subject: `batch:${batchKey}`,
    details: {
      cycle: context.cycleId,
      delivery: deliveryId,
      payloadSha256: sha,
      leads: summary.map(({ lead, pseudonym, score }) => ({ lead, pseudonym, score })),
    },
  });
  report.dryRunRecorded += batch.length;
}
