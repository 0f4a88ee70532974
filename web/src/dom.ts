// Every piece of server data reaches the page through these helpers as text nodes or attributes:
// never as HTML, because names, reasons and audit details may hold hostile strings.

type Child = Node | string | number | null | undefined | false;
type Attributes = Record<string, string | number | boolean | null | undefined>;

/** Create an element with attributes (false/null/undefined ones left out) and text or element children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** The element with this id, which the page's static markup guarantees. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`#${id} is missing from index.html`);
  return element as T;
}

export function setText(id: string, text: string): HTMLElement {
  const element = byId(id);
  element.textContent = text;
  return element;
}

/** `12:34:56` in UTC: the whole system (daily caps, restarts) counts in UTC. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().slice(11, 19);
}

/** `2025-01-31 12:34 UTC`. */
export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? String(iso)
    : `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function timeElement(iso: string | null | undefined, withDate = false): HTMLTimeElement {
  return h('time', { datetime: iso ?? null }, withDate ? formatDateTime(iso) : formatTime(iso));
}

const numberFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

export function formatNumber(value: number | null | undefined): string {
  return typeof value === 'number' && Number.isFinite(value) ? numberFormat.format(value) : '—';
}

export function formatPercent(fraction: number | null | undefined, digits = 1): string {
  return typeof fraction === 'number' && Number.isFinite(fraction)
    ? `${(fraction * 100).toFixed(digits)}%`
    : '—';
}

/** Cut a string to `max` characters so one hostile value cannot blow up a panel. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
