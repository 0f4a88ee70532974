import { h, timeElement, truncate } from '../dom';
import { summarizeAudit } from '../summary';
import type { AuditEntry } from '../types';

interface AuditListOptions {
  /** How many entries stay on screen. */
  limit: number;
  /** Which entries belong in this list. */
  accepts(entry: AuditEntry): boolean;
  /** Show the sequence number, actor and subject too (the audit panel), not only the action (the flow). */
  detailed: boolean;
}

/**
 * A newest-first list of audit entries fed by both the REST backfill and the live stream. Entries are
 * keyed by their sequence number, so an entry that arrives by both ways shows once.
 */
export class AuditList {
  #entries: AuditEntry[] = [];

  constructor(
    private readonly list: HTMLElement,
    private readonly options: AuditListOptions,
  ) {}

  /** One entry from the stream: prepended at once when it is the newest, which is the usual case. */
  add(entry: AuditEntry): void {
    if (!this.options.accepts(entry) || this.#entries.some((e) => e.seq === entry.seq)) return;
    const newest = this.#entries[0];
    if (newest === undefined || entry.seq > newest.seq) {
      this.#entries.unshift(entry);
      this.list.prepend(this.#item(entry));
      this.#trim();
      return;
    }
    this.merge([entry]);
  }

  /** Entries from a REST read (initial load, or catch-up after a reconnect). */
  merge(entries: AuditEntry[]): void {
    const bySeq = new Map(this.#entries.map((e) => [e.seq, e]));
    for (const entry of entries) if (this.options.accepts(entry)) bySeq.set(entry.seq, entry);
    const merged = [...bySeq.values()].sort((a, b) => b.seq - a.seq).slice(0, this.options.limit);
    // A catch-up that brings nothing new leaves the list alone: a live region would read it all again.
    const unchanged =
      merged.length === this.#entries.length && merged.every((e, i) => e.seq === this.#entries[i]?.seq);
    this.#entries = merged;
    if (!unchanged) this.list.replaceChildren(...merged.map((e) => this.#item(e)));
  }

  clear(): void {
    this.#entries = [];
    this.list.replaceChildren();
  }

  #trim(): void {
    while (this.#entries.length > this.options.limit) {
      this.#entries.pop();
      this.list.lastElementChild?.remove();
    }
  }

  #item(entry: AuditEntry): HTMLLIElement {
    const summary = summarizeAudit(entry);
    const item = h(
      'li',
      { 'data-action': entry.action, 'data-seq': entry.seq, 'data-family': entry.action.split('.')[0] },
      timeElement(entry.at),
      this.options.detailed ? h('span', { class: 'seq' }, `#${entry.seq}`) : null,
      h('span', { class: 'action' }, entry.action),
      this.options.detailed ? h('span', { class: 'actor' }, truncate(String(entry.actor), 40)) : null,
      summary === '' ? null : h('span', { class: 'summary' }, summary),
    );
    if (entry.subject) item.title = truncate(String(entry.subject), 200);
    return item;
  }
}
