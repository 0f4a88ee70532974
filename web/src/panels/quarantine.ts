import { type Api, isApiError } from '../api';
import { byId, describeError, h, truncate } from '../dom';
import type { QuarantinedLead, ReleaseResult, Role } from '../types';
import { canOperate, OPERATOR_ONLY, showResult } from './controls';
import type { ReasonDialog } from './reason-dialog';

const PAGE = 50;

interface QuarantinePage {
  leads: QuarantinedLead[];
  nextBeforeId: number | null;
}

/** Quarantined leads (masked by the server) with a checkbox each, released back to pending by an operator. */
export class QuarantinePanel {
  #leads: QuarantinedLead[] = [];
  #nextBeforeId: number | null = null;
  #lastPage = '';
  readonly #selected = new Set<number>();
  readonly #allowed: boolean;

  constructor(
    private readonly api: Api,
    role: Role,
    private readonly reasonDialog: ReasonDialog,
    private readonly afterChange: () => void,
    signal: AbortSignal,
  ) {
    this.#allowed = canOperate(role);
    byId('quarantine-release').addEventListener('click', () => void this.#release(), { signal });
    byId('quarantine-more').addEventListener('click', () => void this.#loadMore(), { signal });
    byId<HTMLInputElement>('quarantine-select-all').addEventListener(
      'change',
      (event) => {
        const checked = (event.target as HTMLInputElement).checked;
        for (const lead of this.#leads) {
          if (checked) this.#selected.add(lead.id);
          else this.#selected.delete(lead.id);
        }
        this.#render();
      },
      { signal },
    );
    byId('quarantine-rows').addEventListener(
      'change',
      (event) => {
        const box = event.target as HTMLInputElement;
        const id = Number(box.dataset.id);
        if (!Number.isInteger(id)) return;
        if (box.checked) this.#selected.add(id);
        else this.#selected.delete(id);
        this.#renderButtons();
      },
      { signal },
    );
  }

  /** The first page again; selections of leads still quarantined are kept. */
  async load(): Promise<void> {
    const page = await this.api.get<QuarantinePage>(`/api/quarantine?limit=${PAGE}`);
    // Unchanged: keep the rows (and the keyboard focus on a checkbox) as they are.
    const text = JSON.stringify(page);
    if (text === this.#lastPage) return;
    this.#lastPage = text;
    this.#leads = page.leads;
    this.#nextBeforeId = page.nextBeforeId;
    const present = new Set(this.#leads.map((l) => l.id));
    for (const id of this.#selected) if (!present.has(id)) this.#selected.delete(id);
    this.#render();
  }

  clear(): void {
    this.#lastPage = '';
    this.#leads = [];
    this.#selected.clear();
    this.#nextBeforeId = null;
    this.#render();
  }

  async #loadMore(): Promise<void> {
    if (this.#nextBeforeId === null) return;
    try {
      const page = await this.api.get<QuarantinePage>(
        `/api/quarantine?limit=${PAGE}&beforeId=${encodeURIComponent(this.#nextBeforeId)}`,
      );
      const known = new Set(this.#leads.map((l) => l.id));
      this.#leads.push(...page.leads.filter((l) => !known.has(l.id)));
      this.#nextBeforeId = page.nextBeforeId;
      this.#render();
    } catch (error) {
      if (!isApiError(error) || error.status !== 401)
        showResult(`Quarantine: ${describeError(error)}`, 'error');
    }
  }

  async #release(): Promise<void> {
    const ids = [...this.#selected].sort((a, b) => a - b);
    if (ids.length === 0 || !this.#allowed) return;
    const reason = await this.reasonDialog.ask({
      title: 'Release from quarantine',
      description: `${ids.length} lead(s) go back to pending and become eligible for export again.`,
      confirmLabel: `Confirm release of ${ids.length}`,
    });
    if (reason === null) return;
    try {
      const result = await this.api.send<ReleaseResult>('POST', '/api/quarantine/release', { ids, reason });
      const skipped = result.skipped.length > 0 ? `, skipped ${result.skipped.join(', ')}` : '';
      showResult(
        `Release: released ${result.changed.length} lead(s)${skipped}`,
        result.changed.length > 0 ? 'change' : 'unchanged',
      );
      for (const id of result.changed) this.#selected.delete(id);
    } catch (error) {
      if (isApiError(error) && error.status === 401) return;
      showResult(`Release failed: ${describeError(error)}`, 'error');
    }
    this.afterChange();
    await this.load().catch(() => undefined);
  }

  #render(): void {
    byId('quarantine-rows').replaceChildren(
      ...this.#leads.map((lead) =>
        h(
          'tr',
          { 'data-lead-id': lead.id },
          h(
            'td',
            {},
            h('input', {
              type: 'checkbox',
              'data-id': lead.id,
              checked: this.#selected.has(lead.id),
              'aria-label': `Select lead ${lead.id}`,
            }),
          ),
          h('td', {}, String(lead.id)),
          h('td', {}, lead.name ?? '—'),
          h('td', {}, lead.email ?? '—'),
          h('td', { class: 'num' }, String(lead.score)),
          h('td', { class: 'reason' }, truncate(lead.reason ?? '', 200)),
        ),
      ),
    );
    byId('quarantine-empty').hidden = this.#leads.length > 0;
    byId('quarantine-more').hidden = this.#nextBeforeId === null;
    const all = byId<HTMLInputElement>('quarantine-select-all');
    all.checked = this.#leads.length > 0 && this.#leads.every((l) => this.#selected.has(l.id));
    all.disabled = this.#leads.length === 0;
    this.#renderButtons();
  }

  #renderButtons(): void {
    const button = byId<HTMLButtonElement>('quarantine-release');
    const count = this.#selected.size;
    button.disabled = !this.#allowed || count === 0;
    button.textContent = count > 0 ? `Release ${count}` : 'Release';
    button.title = this.#allowed ? 'Release the selected leads back to pending' : OPERATOR_ONLY;
    const all = byId<HTMLInputElement>('quarantine-select-all');
    all.checked = this.#leads.length > 0 && this.#leads.every((l) => this.#selected.has(l.id));
  }
}
