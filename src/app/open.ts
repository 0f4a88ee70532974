// The composition root: the parts built from the configuration (parts.ts), then the App assembled
// from its concerns (cycle, control, views, alerts, evidence, signing, ingest).
import { alertsPart } from './app-alerts.js';
import { controlPart } from './app-control.js';
import { cyclePart } from './app-cycle.js';
import { evidencePart } from './app-evidence.js';
import { ingestPart } from './app-ingest.js';
import { signingPart } from './app-signing.js';
import { viewsPart } from './app-views.js';
import { openParts } from './parts.js';
import type { App, OpenAppOptions } from './types.js';

/** Build the object graph from the configuration: the only place that knows every module. */
export async function openApp(options: OpenAppOptions): Promise<App> {
  const parts = await openParts(options);
  const { config, clock, logger, store, audit, releasers } = parts;
  const evidence = evidencePart(parts);
  return {
    config,
    clock,
    logger,
    store,
    audit,
    ...ingestPart(parts),
    ...viewsPart(parts),
    ...cyclePart(parts),
    ...controlPart(parts),
    ...evidence,
    ...signingPart(parts, evidence.releaseManifest),
    ...alertsPart(parts),
    close: () => releasers.releaseAll(),
  };
}
