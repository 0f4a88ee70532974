// The app's views part: the status, the masked leads, the run state, the request monitor and the
// installation's metrics.
import { createMetrics } from '../monitor/index.js';
import { listMaskedLeads, readRunState, readStatus } from '../views/index.js';
import { declaredLeadAttributes } from './ingest-deps.js';
import type { AppParts } from './parts.js';
import type { App } from './types.js';

export function viewsPart(
  parts: AppParts,
): Pick<App, 'status' | 'listLeads' | 'runState' | 'requestMonitor' | 'metrics'> {
  const { store, clock, config, requestMonitor } = parts;
  const views = { store, clock, config, requestMonitor };
  return {
    status: () => readStatus(views),
    listLeads: (listOptions) =>
      listMaskedLeads(
        { store, pseudonymizer: parts.requirePseudonymizer(), attributes: declaredLeadAttributes(config) },
        listOptions,
      ),
    runState: () => readRunState(views),
    requestMonitor,
    metrics: (worker) => createMetrics({ store, config, clock, ...(worker ? { worker } : {}) }),
  };
}
