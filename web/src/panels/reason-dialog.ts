export interface ReasonRequest {
  title?: string;
  description?: string;
  confirmLabel?: string;
}

/**
 * A modal dialog that asks for the reason every operator action carries into the audit chain.
 * Resolves to the trimmed reason, or null when cancelled (button or Escape).
 */
export class ReasonDialog {
  #resolve: ((reason: string | null) => void) | null = null;
  #opener: Element | null = null;

  constructor(
    private readonly dialog: HTMLDialogElement,
    private readonly parts: {
      reason: HTMLTextAreaElement;
      confirm: HTMLButtonElement;
      title?: HTMLElement;
      description?: HTMLElement;
    },
  ) {
    const form = dialog.querySelector('form');
    if (form === null) throw new Error(`#${dialog.id} needs a form`);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const submitter = (event as SubmitEvent).submitter;
      if (submitter !== parts.confirm) {
        this.#finish(null);
        return;
      }
      const reason = parts.reason.value.trim();
      if (reason === '') {
        // `required` lets whitespace through; the server would refuse it anyway.
        parts.reason.setCustomValidity('Give a reason: it goes into the audit chain.');
        parts.reason.reportValidity();
        return;
      }
      this.#finish(reason);
    });
    parts.reason.addEventListener('input', () => parts.reason.setCustomValidity(''));
    dialog.addEventListener('close', () => this.#finish(null));
  }

  ask(request: ReasonRequest = {}): Promise<string | null> {
    this.#finish(null);
    const { reason, confirm, title, description } = this.parts;
    if (title && request.title) title.textContent = request.title;
    if (description && request.description !== undefined) description.textContent = request.description;
    if (request.confirmLabel) confirm.textContent = request.confirmLabel;
    reason.value = '';
    reason.setCustomValidity('');
    this.#opener = document.activeElement;
    return new Promise((resolve) => {
      this.#resolve = resolve;
      this.dialog.showModal();
      reason.focus();
    });
  }

  #finish(reason: string | null): void {
    const resolve = this.#resolve;
    if (resolve === null) return;
    this.#resolve = null;
    if (this.dialog.open) this.dialog.close();
    if (this.#opener instanceof HTMLElement && this.#opener.isConnected) this.#opener.focus();
    resolve(reason);
  }
}
