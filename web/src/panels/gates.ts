import { byId, formatDateTime, h, truncate } from '../dom';
import type { Gate, GateItem, Gates } from '../types';

/**
 * An item's columns, state first after the id: in a narrow panel (any phone, a half-width panel on a
 * desktop) the table stacks each item into a block (styles.css), each cell labelled by its column.
 */
const ITEM_COLUMNS = ['id', 'state', 'text', 'evidence', 'kind', 'signer', 'date'] as const;
type ItemColumn = (typeof ITEM_COLUMNS)[number];

const cell = (column: ItemColumn, text: string) => h('td', { class: column, 'data-label': column }, text);

function itemRow(item: GateItem): HTMLTableRowElement {
  return h(
    'tr',
    { 'data-item': item.id, 'data-state': item.state },
    cell('id', item.id),
    cell('state', item.state),
    cell('text', item.text),
    cell('evidence', truncate(item.detail ?? '', 300) || '—'),
    cell('kind', item.kind === 'attested' && item.role ? `attested (${item.role})` : item.kind),
    cell('signer', item.signer ?? '—'),
    cell('date', item.date ? formatDateTime(item.date) : '—'),
  );
}

function gateElement(gate: Gate, open: boolean): HTMLLIElement {
  const table = h(
    'table',
    { class: 'items' },
    h('thead', {}, h('tr', {}, ...ITEM_COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, ...gate.items.map(itemRow)),
  );
  const okItems = gate.items.filter((i) => i.state === 'ok').length;
  return h(
    'li',
    { 'data-gate': gate.gate, 'data-ok': String(gate.ok) },
    h(
      'details',
      { open },
      h(
        'summary',
        {},
        h('span', { class: 'badge' }, gate.ok ? 'ok' : 'not ok'),
        ` Gate ${gate.gate}: ${gate.title} (${okItems}/${gate.items.length})`,
      ),
      h('div', { class: 'table-wrap items-wrap' }, table),
    ),
  );
}

/** The nine gates, each expandable to its items, and the CEO's activation. */
export function renderGates(gates: Gates): void {
  const list = byId('gates');
  // A refresh must not fold up the gate the operator is reading.
  const open = new Set(
    [...list.querySelectorAll<HTMLElement>('li[data-gate]')]
      .filter((li) => li.querySelector('details')?.open)
      .map((li) => li.dataset.gate),
  );
  const sorted = [...gates.gates].sort((a, b) => a.gate - b.gate);
  list.replaceChildren(...sorted.map((g) => gateElement(g, open.has(String(g.gate)))));

  const activation = byId('activation');
  activation.dataset.state = gates.activation.state;
  activation.replaceChildren(
    h('span', { class: 'badge' }, gates.activation.state),
    ' CEO activation',
    gates.activation.signer ? ` · signed by ${gates.activation.signer}` : '',
    gates.activation.date ? ` · ${formatDateTime(gates.activation.date)}` : '',
    gates.activation.detail ? ` · ${truncate(gates.activation.detail, 200)}` : '',
  );

  const summary = byId('gates-summary');
  summary.dataset.ok = String(gates.cleared);
  summary.textContent = gates.cleared
    ? 'All nine gates are cleared.'
    : `Not cleared: ${gates.missing.length} item(s) missing.`;
  const missing = byId('gates-missing');
  missing.replaceChildren(...gates.missing.map((m) => h('li', {}, truncate(m, 200))));
  byId('gates-missing-box').hidden = gates.missing.length === 0;
}
