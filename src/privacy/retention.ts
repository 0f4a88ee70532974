import {
  ARCHIVABLE_STATES,
  type ArchivableState,
  archiveLeads,
  countArchivable,
  countIncompleteBefore,
  eraseFromBatchSummaries,
  type IncompleteState,
  lockLeadsForWrite,
  nextArchivable,
} from '../store/index.js';
import type { PrivacyDeps } from './deps.js';
import { flushErasedPages } from './erasure.js';

const DAY_MS = 24 * 3_600_000;
/**
 * Leads archived per transaction: each commit (one fsync, one audit entry) holds the write lock for a
 * few milliseconds, so the runner and ingest go on meanwhile, and a million leads never sit in one
 * giant transaction. A run stopped half-way has committed whole chunks; running it again goes on.
 */
export const DEFAULT_ARCHIVE_CHUNK = 1_000;

export interface ArchiveOptions {
  /** Leads whose last change is before this instant (epoch ms) are archived. Not after now. */
  before: number;
  /** Count what would be archived; change nothing. */
  dryRun?: boolean;
  /** The retention window the cutoff came from, when it did (recorded with each chunk). */
  retentionDays?: number | null;
  chunkSize?: number;
  actor?: string;
  /** After each committed chunk: leads archived so far. */
  onChunk?: (archivedSoFar: number) => void;
}

export interface ArchiveReport {
  cutoff: string;
  retentionDays: number | null;
  dryRun: boolean;
  /** Leads archived (in a dry run: that would be), by the state they were in; `archived`: dropped leads whose data is now erased. */
  archived: Record<ArchivableState, number> & { total: number };
  /** Transactions committed (0 in a dry run). */
  chunks: number;
  /** Not complete (pending, in flight, quarantined), last changed before the cutoff: left as they are. */
  leftAsTheyAre: Record<IncompleteState, number> & { total: number };
  /** Where old copies of the erased data may remain in the database (see flushErasedPages), or null. */
  storageNote: string | null;
}

export type ArchiveResult = ({ kind: 'done' } & ArchiveReport) | { kind: 'refused'; message: string };

/** The cutoff VALHALLA_RETENTION_DAYS gives now, or null when no retention window is set. */
export function retentionCutoff(app: PrivacyDeps): { before: number; retentionDays: number } | null {
  const days = app.config.retentionDays;
  return days === null ? null : { before: app.clock.now() - days * DAY_MS, retentionDays: days };
}

/**
 * `valhalla archive`: leads in an end state (exported, expired, below threshold, or dropped from
 * quarantine) whose last change is before the cutoff become `archived`, their personal data erased;
 * the row stays (dedup key, score, times) for the record and the counts. Pending, in-flight and
 * quarantined leads are not complete and are never touched: they are counted in the report. Done in
 * chunks, each committed with its `leads.archived` audit entry (counts, cutoff, lead ids; no PII).
 */
export async function archiveCompleted(app: PrivacyDeps, options: ArchiveOptions): Promise<ArchiveResult> {
  const { store, audit, clock } = app;
  const now = clock.now();
  if (!Number.isFinite(options.before) || options.before > now) {
    return {
      kind: 'refused',
      message: `the cutoff ${describeInstant(options.before)} is in the future (now ${describeInstant(now)}): only leads whose last change is in the past can be archived`,
    };
  }
  const chunkSize = options.chunkSize ?? DEFAULT_ARCHIVE_CHUNK;
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > 10_000) {
    return {
      kind: 'refused',
      message: `chunk size must be a whole number from 1 to 10000, not ${chunkSize}`,
    };
  }
  const cutoff = options.before;
  const actor = options.actor ?? app.config.operator;
  const retentionDays = options.retentionDays ?? null;
  const archived = { exported: 0, expired: 0, below_threshold: 0, archived: 0, total: 0 };
  let chunks = 0;

  if (options.dryRun) {
    const would = await countArchivable(store.db, cutoff);
    Object.assign(archived, would, { total: sum(would) });
  } else {
    const reason = `archived: last change before the retention cutoff ${describeInstant(cutoff)}`;
    for (;;) {
      const chunk = await store.db.transaction().execute(async (trx) => {
        await lockLeadsForWrite(trx, store.dialect);
        const candidates = await nextArchivable(trx, cutoff, chunkSize);
        if (candidates.length === 0) return null;
        const at = clock.now();
        const byState = { exported: 0, expired: 0, below_threshold: 0, archived: 0 };
        const ids: number[] = [];
        for (const state of ARCHIVABLE_STATES) {
          const group = candidates.filter((c) => c.state === state).map((c) => c.id);
          const done = await archiveLeads(trx, group, state, {
            now: at,
            cutoff,
            reason: `${reason} (was ${state})`,
          });
          byState[state] = done.length;
          ids.push(...done);
        }
        if (ids.length === 0) return { byState, count: 0 };
        await eraseFromBatchSummaries(trx, ids);
        await audit.append(trx, {
          actor,
          action: 'leads.archived',
          details: {
            cutoff: describeInstant(cutoff),
            retentionDays,
            count: ids.length,
            byState,
            leads: ids.sort((a, b) => a - b),
          },
        });
        return { byState, count: ids.length };
      });
      // Nothing left; or nothing of this chunk still qualified (changed meanwhile): stop rather than spin.
      if (chunk === null || chunk.count === 0) break;
      chunks++;
      for (const state of ARCHIVABLE_STATES) archived[state] += chunk.byState[state];
      archived.total += chunk.count;
      options.onChunk?.(archived.total);
    }
    if (archived.total > 0) {
      app.logger.info(
        { cutoff: describeInstant(cutoff), archived: archived.total, chunks },
        'completed leads archived',
      );
    }
  }

  const incomplete = await countIncompleteBefore(store.db, cutoff);
  return {
    kind: 'done',
    cutoff: describeInstant(cutoff),
    retentionDays,
    dryRun: options.dryRun === true,
    archived,
    chunks,
    leftAsTheyAre: { ...incomplete, total: sum(incomplete) },
    storageNote: !options.dryRun && archived.total > 0 ? await flushErasedPages(app) : null,
  };
}

function sum(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

function describeInstant(at: number): string {
  return Number.isFinite(at) ? new Date(at).toISOString() : String(at);
}
