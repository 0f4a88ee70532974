// The app's evidence part: the gates report and bundle, and the release manifest the signatures
// approve.
import { buildGatesBundle, buildManifest, evaluateGates } from '../gates/index.js';
import { readInstallationId } from '../store/index.js';
import type { AppParts } from './parts.js';
import type { App } from './types.js';

export function evidencePart(
  parts: AppParts,
): Pick<App, 'gatesReport' | 'verifyGates' | 'gatesBundle' | 'releaseManifest'> {
  const { store, config, audit, clock } = parts;
  const gatesReport = () => evaluateGates({ store, config, audit, clock });
  return {
    gatesReport,
    async verifyGates() {
      const report = await gatesReport();
      await audit.record({
        actor: config.operator,
        action: 'gates.verified',
        details: { cleared: report.cleared, missing: report.missing, policyHash: report.policyHash },
      });
      return report;
    },
    gatesBundle: () => buildGatesBundle({ store, config, audit, clock }),
    async releaseManifest() {
      const id = await readInstallationId(store.db);
      return id === undefined ? null : buildManifest(config, id);
    },
  };
}
