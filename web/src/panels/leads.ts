import { byId, h } from '../dom';
import type { LeadCounts } from '../types';

// The lifecycle's order; states the server adds later follow in its order, `total` always last.
const ORDER = [
  'pending',
  'in_flight',
  'exported',
  'quarantined',
  'below_threshold',
  'expired',
  'rejected',
  'duplicate',
  'archived',
];

/** Lead counts by state; each number sits alone in its `[data-count]` element. */
export function renderLeadCounts(leads: LeadCounts): void {
  const list = byId('lead-counts');
  const keys = Object.keys(leads).filter((key) => key !== 'total' && typeof leads[key] === 'number');
  keys.sort((a, b) => rank(a) - rank(b));
  if (typeof leads.total === 'number') keys.push('total');
  list.replaceChildren(
    ...keys.map((state) =>
      h(
        'div',
        { class: 'count', 'data-state': state },
        h('dt', {}, state.replaceAll('_', ' ')),
        h('dd', { 'data-count': state }, String(leads[state])),
      ),
    ),
  );
}

function rank(state: string): number {
  const index = ORDER.indexOf(state);
  return index === -1 ? ORDER.length : index;
}
