// The app's control part: the gate clearance, mode changes (pause, resume, rollback, rearm) and
// their acknowledgement by the workers, the policy check and the limits in force.
import { systemSleep } from '../clock/index.js';
import { changeOperatorMode, checkPolicyChange } from '../control/index.js';
import { awaitModeAck } from './mode-ack.js';
import type { AppParts } from './parts.js';
import type { App } from './types.js';

export function controlPart(
  parts: AppParts,
): Pick<App, 'gates' | 'changeMode' | 'awaitModeAck' | 'checkPolicy' | 'limitsInForce' | 'reloadLimits'> {
  const { config, store, audit, clock, alerts, limits, gates } = parts;
  return {
    gates,
    checkPolicy: (source) => checkPolicyChange({ store, audit, alerts, clock, config }, source),
    limitsInForce: limits.current,
    reloadLimits: limits.reload,
    changeMode: (command, request) =>
      changeOperatorMode(
        {
          store,
          audit,
          alerts,
          clock,
          config,
          gates,
          // Ahead of an upload being stored in this process (upload-ingest.ts): a stop never queues behind it.
          ahead: parts.ahead,
        },
        command,
        request,
      ),
    awaitModeAck: (request) => awaitModeAck({ store, clock, sleep: systemSleep, config }, request),
  };
}
