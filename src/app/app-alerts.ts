// The app's alerts part: the recorder, the configured channels, the dispatcher's pass, the test
// alert (gate 5's evidence) and the recent alerts with their deliveries.
import { createAlertDispatcher, sendTestAlert } from '../alerts/index.js';
import { alertDeliveries, recentAlerts } from '../store/index.js';
import type { AppParts } from './parts.js';
import type { App } from './types.js';

export function alertsPart(
  parts: AppParts,
): Pick<App, 'alerts' | 'alertChannels' | 'dispatchAlerts' | 'sendTestAlert' | 'recentAlerts'> {
  const { store, audit, clock, logger, config, alerts, alertChannels } = parts;
  return {
    alerts,
    alertChannels,
    dispatchAlerts: () =>
      createAlertDispatcher({ store, clock, logger, channels: alertChannels() }).dispatchDue(),
    sendTestAlert: () =>
      sendTestAlert({ store, audit, clock, channels: alertChannels(), operator: config.operator }),
    async recentAlerts(limit) {
      const rows = await recentAlerts(store.db, limit);
      return Promise.all(
        rows.map(async (a) => ({ ...a, deliveries: await alertDeliveries(store.db, a.id) })),
      );
    },
  };
}
