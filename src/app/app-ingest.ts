// The app's ingest part: files and stdin, uploads through the upload thread, and the synthetic
// leads of Phase 3 (loaded when nothing was ever ingested, archived at a Phase 4 start).
import { ingestFile } from '../ingest/index.js';
import type { AppParts } from './parts.js';
import { archiveSyntheticLeads, loadSyntheticLeadsIfEmpty } from './synthetic.js';
import type { App } from './types.js';

export function ingestPart(
  parts: AppParts,
): Pick<App, 'ingest' | 'ingestUpload' | 'archiveSyntheticLeads' | 'loadSyntheticLeadsIfEmpty'> {
  const { store, audit, clock, config, ingestDeps } = parts;
  return {
    ingest: (ingestOptions) => ingestFile(ingestDeps(), ingestOptions),
    ingestUpload(upload) {
      parts.requirePseudonymizer();
      return parts.uploadIngester().ingest(upload);
    },
    archiveSyntheticLeads: () => archiveSyntheticLeads({ store, audit, clock, config }),
    loadSyntheticLeadsIfEmpty: (count) =>
      loadSyntheticLeadsIfEmpty({ store, clock, config, ingestDeps }, count),
  };
}
