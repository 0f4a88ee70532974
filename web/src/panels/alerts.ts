import { byId, h, timeElement, truncate } from '../dom';
import type { Alert } from '../types';

function deliveries(alert: Alert): string {
  if (!Array.isArray(alert.deliveries) || alert.deliveries.length === 0) return 'not delivered';
  return alert.deliveries
    .map((d) => `${d.channel} ${d.state}${d.attempts > 1 ? ` ×${d.attempts}` : ''}`)
    .join(', ');
}

/** The latest alerts, newest first, with where each was delivered. */
export function renderAlerts(alerts: Alert[]): void {
  const list = byId('alerts');
  list.replaceChildren(
    ...alerts.map((alert) => {
      const failed = alert.deliveries?.find((d) => d.lastError);
      return h(
        'li',
        { 'data-alert-id': alert.id, 'data-severity': alert.severity },
        h(
          'div',
          { class: 'alert-head' },
          h('span', { class: 'badge' }, alert.severity),
          timeElement(alert.at, true),
          h('span', { class: 'event' }, alert.event),
          alert.repeats > 1 ? h('span', { class: 'repeats' }, `×${alert.repeats}`) : null,
        ),
        h('p', { class: 'message' }, truncate(alert.message, 400)),
        h(
          'p',
          { class: 'deliveries', title: failed?.lastError ? truncate(failed.lastError, 300) : null },
          deliveries(alert),
        ),
      );
    }),
  );
  byId('alerts-empty').hidden = alerts.length > 0;
}
