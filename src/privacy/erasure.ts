import { z } from 'zod';
import { leadKey } from '../engine/index.js';
import { refuseContactData } from '../pii/index.js';
import type { LeadState } from '../policy/index.js';
import {
  type DeliveryState,
  ERASED_MARKER,
  eraseFromBatchSummaries,
  eraseLeadData,
  findLeadsForErasure,
  flushErasedData,
  LEAD_PII_FIELDS,
  type Lead,
  type LeadPiiField,
  liveBatchesOfLead,
  lockLeadsForWrite,
} from '../store/index.js';
import type { PrivacyDeps } from './deps.js';

/** A lead named by its id, or a person by their e-mail (normalised as ingest does). */
export type LeadIdentifier = { id: number } | { email: string };

export interface ErasureRequest {
  target: LeadIdentifier;
  /** Why (a ticket or request number; never personal data): audited, and kept as the lead's reason. */
  reason: string;
  /** Who erases; the configured operator by default. */
  actor?: string;
}

/**
 * Whether the partner must be asked to erase the lead too. `required`: a batch carrying it was
 * accepted. `possible`: a request carrying it was made but not accepted (retries spent, refused, or
 * cut mid-request): the partner may hold it. `none`: no request carrying it ever left.
 */
export type PartnerNoticeLevel = 'required' | 'possible' | 'none';

/** A batch that carried the lead to the partner (or may have): what the partner knows it by. */
export interface PartnerBatchReference {
  /** The batch's `Idempotency-Key`. */
  batchKey: string;
  state: DeliveryState;
  attempts: number;
  /** When the first and the last request carrying the batch were recorded (null: none was recorded). */
  firstAttemptAt: string | null;
  lastAttemptAt: string | null;
}

/** What to tell the partner: the references it can find the lead by; no contact data. */
export interface PartnerNotice {
  level: PartnerNoticeLevel;
  /** The lead's own idempotency key (`idempotency_key` of each lead the partner received). */
  leadKey: string;
  /** The lead's external id as it was sent; null when it had none, or was erased before. */
  externalId: string | null;
  exportedAt: string | null;
  batches: PartnerBatchReference[];
}

export interface ErasedLead {
  id: number;
  pseudonym: string;
  /** Erased by an earlier request: nothing was changed now. */
  alreadyErased: boolean;
  erasedAt: string;
  stateBefore: LeadState;
  state: LeadState;
  /** The columns that held data and were overwritten now (none when already erased). */
  fields: (LeadPiiField | 'attributes')[];
  partner: PartnerNotice;
}

export type ErasureResult =
  | { kind: 'erased'; leads: ErasedLead[]; storageNote: string | null }
  | { kind: 'not_found'; message: string }
  | {
      kind: 'refused';
      message: string;
      /** The leads in a batch being sent now, with that batch. */
      inFlight: {
        id: number;
        pseudonym: string;
        batchKey: string | null;
        batchState: DeliveryState | null;
      }[];
    };

const emailSchema = z.email();

/**
 * The e-mail as ingest stores it and keys it: trimmed and lower-cased (src/ingest/lead-schema.ts), and
 * valid; null when it is not an e-mail address. Ingest and erasure must agree exactly, or an erasure
 * request would miss the lead: test/integration/erasure.test.ts ingests through the real ingest and
 * erases by variants of the address.
 */
export function normaliseEmail(text: string): string | null {
  const email = text.trim().toLowerCase();
  return email.length <= 254 && emailSchema.safeParse(email).success ? email : null;
}

/** `42` → a lead id; `Jane.Doe@Example.com` → that e-mail, normalised; anything else → null. */
export function parseLeadIdentifier(text: string): LeadIdentifier | null {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) {
    const id = Number(trimmed);
    return Number.isSafeInteger(id) && id > 0 ? { id } : null;
  }
  const email = normaliseEmail(trimmed);
  return email === null ? null : { email };
}

/**
 * `valhalla leads erase`: overwrite a person's data (name, e-mail, phone, company, external id) in
 * every lead row that holds it, keep the row (its dedup key keeps the person from being ingested
 * again, its score and state keep the counts right), and say what the partner must be told. One
 * transaction: the `lead.erased` entries (pseudonyms only) commit with the change. A lead in a batch
 * being sent is refused: the outbox sends what the lead row holds, and must never send the marker in
 * place of a person, nor have its batch change under its idempotency key. Erasing again is a no-op.
 */
export async function eraseLead(app: PrivacyDeps, request: ErasureRequest): Promise<ErasureResult> {
  const reason = request.reason.trim();
  if (reason === '') return { kind: 'refused', message: 'a reason is required (audited)', inFlight: [] };
  // The reason goes into the audit chain, which nothing can edit: an erasure must not be the way a
  // person's e-mail or phone number gets in there for good.
  const contactData = refuseContactData(reason, 'the reason');
  if (contactData !== null) return { kind: 'refused', message: contactData, inFlight: [] };
  const pseudonymizer = app.pseudonymizer();
  const actor = request.actor ?? app.config.operator;
  const { store, audit, clock } = app;
  const match =
    'id' in request.target
      ? { id: request.target.id }
      : { email: request.target.email, emailDedupKey: pseudonymizer.dedupKey('email', request.target.email) };
  const described = 'id' in request.target ? `id ${request.target.id}` : 'this e-mail address';
  const outcome = await store.db.transaction().execute(async (trx): Promise<ErasureResult> => {
    await lockLeadsForWrite(trx, store.dialect);
    const leads = await findLeadsForErasure(trx, store.dialect, match);
    if (leads.length === 0) {
      return { kind: 'not_found', message: `no lead found for ${described}` };
    }
    const batchesOf = new Map<number, Awaited<ReturnType<typeof liveBatchesOfLead>>>();
    for (const lead of leads) batchesOf.set(lead.id, await liveBatchesOfLead(trx, lead.id));
    const inFlight = leads.filter((l) => l.state === 'in_flight');
    if (inFlight.length > 0) {
      const sending = inFlight.map((l) => {
        const batch = batchesOf.get(l.id)?.find((b) => ['queued', 'sending', 'retry_wait'].includes(b.state));
        return {
          id: l.id,
          pseudonym: pseudonymizer.pseudonym(l.dedup_key),
          batchKey: batch?.batchKey ?? null,
          batchState: batch?.state ?? null,
        };
      });
      return {
        kind: 'refused',
        message:
          `${sending.map((s) => `lead ${s.id} is in batch ${s.batchKey ?? '(unknown)'} (${s.batchState ?? 'unknown'}) being sent`).join('; ')}: ` +
          'the outbox sends what the lead row holds, so its data cannot change until the batch ends. ' +
          'Erase it once the batch is accepted (then ask the partner to erase it too) or quarantined; ' +
          'nothing was changed',
        inFlight: sending,
      };
    }

    const now = clock.now();
    const erased: ErasedLead[] = [];
    for (const lead of leads) {
      const notice = partnerNotice(lead, batchesOf.get(lead.id) ?? []);
      const pseudonym = pseudonymizer.pseudonym(lead.dedup_key);
      if (lead.erased_at !== null) {
        erased.push({
          id: lead.id,
          pseudonym,
          alreadyErased: true,
          erasedAt: iso(lead.erased_at),
          stateBefore: lead.state,
          state: lead.state,
          fields: [],
          partner: notice,
        });
        continue;
      }
      // Never sent again: a lead that could still be queued (pending) or released (quarantined) is
      // archived; one in an end state keeps it (exported stays exported: it was).
      const state: LeadState =
        lead.state === 'pending' || lead.state === 'quarantined' ? 'archived' : lead.state;
      // Its attributes go with the rest, personal data or not: `eraseLeadData` sets the column null.
      const fields: ErasedLead['fields'] = [
        ...LEAD_PII_FIELDS.filter((f) => lead[f] !== null && lead[f] !== ERASED_MARKER),
        ...(lead.attributes !== null ? (['attributes'] as const) : []),
      ];
      await audit.append(trx, {
        actor,
        action: 'lead.erased',
        subject: pseudonym,
        details: {
          lead: lead.id,
          pseudonym,
          reason,
          fields,
          stateBefore: lead.state,
          state,
          exported: lead.exported_at !== null,
          partnerNotice: notice.level,
          leadKey: notice.leadKey,
          batches: notice.batches.map((b) => ({
            batchKey: b.batchKey,
            state: b.state,
            attempts: b.attempts,
          })),
        },
      });
      // A reason kept with the state may quote the partner's text (`duplicate at partner: …`,
      // `refused by the partner: …`): it goes with the lead's data.
      const newReason =
        state !== lead.state
          ? { state, reason: `erased (was ${lead.state}) by ${actor}: ${reason}` }
          : lead.state_reason !== null
            ? { reason: `erased by ${actor}: ${reason}` }
            : {};
      await eraseLeadData(trx, lead.id, { now, ...newReason });
      erased.push({
        id: lead.id,
        pseudonym,
        alreadyErased: false,
        erasedAt: iso(now),
        stateBefore: lead.state,
        state,
        fields,
        partner: notice,
      });
    }
    const changed = erased.filter((e) => !e.alreadyErased).map((e) => e.id);
    if (changed.length > 0) await eraseFromBatchSummaries(trx, changed);
    return { kind: 'erased', leads: erased, storageNote: null };
  });

  if (outcome.kind === 'refused' && outcome.inFlight.length > 0) {
    // The request and its refusal are part of the record: when it came, and why it had to wait.
    await audit.record({
      actor,
      action: 'lead.erase_refused',
      subject: outcome.inFlight[0]?.pseudonym ?? null,
      details: {
        reason,
        refusal: 'in a batch being sent',
        leads: outcome.inFlight.map((l) => ({ lead: l.id, pseudonym: l.pseudonym, batchKey: l.batchKey })),
      },
    });
  }
  if (outcome.kind !== 'erased') return outcome;
  const changed = outcome.leads.filter((l) => !l.alreadyErased);
  if (changed.length > 0) {
    app.logger.info(
      { leads: changed.map((l) => ({ lead: l.id, pseudonym: l.pseudonym })) },
      'lead data erased',
    );
  }
  return { ...outcome, storageNote: changed.length > 0 ? await flushErasedPages(app) : null };
}

function partnerNotice(lead: Lead, batches: Awaited<ReturnType<typeof liveBatchesOfLead>>): PartnerNotice {
  // A batch never attempted never left: the partner cannot know it.
  const attempted = batches.filter((b) => b.attempts > 0);
  const level: PartnerNoticeLevel =
    lead.exported_at !== null || attempted.some((b) => b.state === 'accepted')
      ? 'required'
      : attempted.length > 0
        ? 'possible'
        : 'none';
  return {
    level,
    leadKey: leadKey(lead),
    externalId: lead.erased_at === null ? lead.external_id : null,
    exportedAt: lead.exported_at === null ? null : iso(lead.exported_at),
    batches: attempted.map((b) => ({
      batchKey: b.batchKey,
      state: b.state,
      attempts: b.attempts,
      firstAttemptAt: b.firstRequestAt === null ? null : iso(b.firstRequestAt),
      lastAttemptAt: b.lastRequestAt === null ? null : iso(b.lastRequestAt),
    })),
  };
}

/**
 * After an erasure or an archive commits: flush what the store can, and say where old copies of the
 * erased data may remain (null: nowhere in the database's files).
 */
export async function flushErasedPages(app: PrivacyDeps): Promise<string | null> {
  const remnants = await flushErasedData(app.store);
  switch (remnants.kind) {
    case 'none':
      return null;
    case 'postgres':
      return (
        `PostgreSQL keeps the old row versions in the files of the tables of schema "${remnants.schema}" until they are rewritten; ` +
        `to remove them now, run as the schema's owner (each statement locks its table while it runs, so the runner waits; it keeps a version that a transaction still open in the database may see, so run it when none has been open since the erasure): ${remnants.commands.join(' ')} ` +
        'The write-ahead log holds them until its segments are recycled after checkpoints, and WAL archives and backups until they expire'
      );
    case 'sqlite_log_busy':
      return 'another process was reading the SQLite database, so its write-ahead log could not be truncated: it still holds the pages as they were before, until the next checkpoint (run the command again later, or stop the runner briefly)';
  }
}

const iso = (at: number) => new Date(at).toISOString();
