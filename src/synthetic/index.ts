// Synthetic leads for Phase 3, demos and tests. A module of its own so the ingest path never loads faker (~40 MB).
export {
  DEFAULT_SHARES,
  type GeneratedKind,
  type GeneratedRow,
  type GeneratedShares,
  type GenerateOptions,
  generateLeads,
  writeGeneratedLeads,
} from './generate.js';
