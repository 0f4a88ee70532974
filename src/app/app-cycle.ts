// The app's cycle part: the cycle engine (its guard, partner and gates), the runner's leadership,
// the operator's queue actions and the pseudonymizer they need.
import { systemSleep } from '../clock/index.js';
import { createEngine, createOperatorActions } from '../engine/index.js';
import { createGuard } from '../guard/index.js';
import type { AppParts } from './parts.js';
import type { App } from './types.js';

export function cyclePart(
  parts: AppParts,
): Pick<App, 'engine' | 'leadership' | 'operatorActions' | 'pseudonymizer'> {
  const { config, store, audit, clock, logger, alerts, requestMonitor, limits, gates } = parts;
  return {
    engine(engineOptions = {}) {
      const p = parts.requirePseudonymizer();
      const partner =
        engineOptions.partner !== undefined
          ? engineOptions.partner
          : parts.partnerFromConfig(engineOptions.leadership);
      const guard = createGuard({
        config,
        audit,
        clock,
        pseudonymizer: p,
        gates: engineOptions.gates ?? gates,
        limits: limits.current,
      });
      return createEngine({
        config,
        store,
        audit,
        clock,
        sleep: engineOptions.sleep ?? systemSleep,
        logger,
        pseudonymizer: p,
        guard,
        partner,
        alerts,
        monitor: requestMonitor,
        leadership: engineOptions.leadership ?? null,
        limits: limits.current,
      });
    },
    leadership: parts.leadership,
    pseudonymizer: parts.requirePseudonymizer,
    operatorActions: (actor) =>
      createOperatorActions({
        store,
        audit,
        clock,
        operator: actor ?? config.operator,
        pseudonymizer: parts.requirePseudonymizer(),
      }),
  };
}
