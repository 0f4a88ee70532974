import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { createPrivateWriteStream, ensurePrivateDir } from '../files/index.js';
import { type IngestDeps, type IngestSummary, ingestFile } from '../ingest/index.js';
import { archiveSyntheticLeads as archiveSyntheticRows, ingestTotals, type Store } from '../store/index.js';

/** Whether a start loads the synthetic leads: Phase 3, real data off, and nothing ever ingested. */
export async function syntheticLeadsWanted(deps: { store: Store; config: Config }): Promise<boolean> {
  const { store, config } = deps;
  if (config.realDataIngest || config.phase !== 3) return false;
  return (await ingestTotals(store.db)).read === 0;
}

/**
 * The main job's start in Phase 3: with real data off and nothing ever ingested, generate and
 * ingest `count` synthetic leads (seed 1) from `<data dir>/synthetic-leads.csv`; null otherwise.
 */
export async function loadSyntheticLeadsIfEmpty(
  deps: { store: Store; clock: Clock; config: Config; ingestDeps: () => IngestDeps },
  count: number,
): Promise<IngestSummary | null> {
  const { clock, config } = deps;
  if (!(await syntheticLeadsWanted(deps))) return null;
  // Loaded here only: faker is large, and only this path and `leads generate` need it.
  const { writeGeneratedLeads } = await import('../synthetic/index.js');
  const file = join(config.dataDir, 'synthetic-leads.csv');
  ensurePrivateDir(config.dataDir);
  // The product's own file in its own folder: replaced on a new load, never through a link.
  const stream = createPrivateWriteStream(file, { overwrite: true });
  await writeGeneratedLeads(stream, { count, seed: 1, now: clock.now(), format: 'csv' });
  stream.end();
  await finished(stream);
  return ingestFile(deps.ingestDeps(), { path: file });
}

/** Archive the synthetic leads still waiting (a Phase 4 start), audited; returns how many. */
export function archiveSyntheticLeads(deps: {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  config: Config;
}): Promise<number> {
  const { store, audit, clock, config } = deps;
  return store.db.transaction().execute(async (trx) => {
    const reason = 'a synthetic lead: never sent live (archived at a Phase 4 start)';
    const ids = await archiveSyntheticRows(trx, clock.now(), reason);
    if (ids.length > 0) {
      await audit.append(trx, {
        actor: config.operator,
        action: 'leads.synthetic_archived',
        details: { count: ids.length, leadIds: ids, reason },
      });
    }
    return ids.length;
  });
}
