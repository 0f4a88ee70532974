import type { AuditEntry, StatusEvent } from './types';

export type StreamState = 'live' | 'reconnecting';

export interface StreamHandlers {
  onHello(lastSeq: number | null): void;
  onAudit(entry: AuditEntry): void;
  onStatus(status: StatusEvent): void;
  onState(state: StreamState): void;
  /**
   * The browser gave up on the stream (a non-200 answer such as 401 closes an EventSource for good).
   * Resolves to true when it is worth connecting again, false when the session is gone.
   */
  onClosed(): Promise<boolean>;
}

// Used only after the browser gave up; while it retries on its own (network drop), it keeps its pace.
const RETRY_DELAYS_MS = [1000, 2000, 5000, 10_000];

function parse<T>(event: MessageEvent): T | null {
  try {
    return JSON.parse(String(event.data)) as T;
  } catch {
    return null;
  }
}

/** The server's event stream (`/api/events`): audit entries and status changes as they commit. */
export class LiveStream {
  #source: EventSource | null = null;
  #retryTimer: number | undefined;
  #failures = 0;
  #stopped = true;

  constructor(
    private readonly url: string,
    private readonly handlers: StreamHandlers,
  ) {}

  start(): void {
    this.#stopped = false;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    window.clearTimeout(this.#retryTimer);
    this.#source?.close();
    this.#source = null;
  }

  #connect(): void {
    if (this.#stopped) return;
    this.handlers.onState('reconnecting');
    const source = new EventSource(this.url);
    this.#source = source;
    source.addEventListener('open', () => {
      this.#failures = 0;
      this.handlers.onState('live');
    });
    source.addEventListener('hello', (event) => {
      const data = parse<{ lastSeq?: unknown }>(event);
      this.handlers.onHello(typeof data?.lastSeq === 'number' ? data.lastSeq : null);
    });
    source.addEventListener('audit', (event) => {
      const entry = parse<AuditEntry>(event);
      if (entry !== null && typeof entry.seq === 'number' && typeof entry.action === 'string') {
        this.handlers.onAudit(entry);
      }
    });
    source.addEventListener('status', (event) => {
      const status = parse<StatusEvent>(event);
      if (status !== null) this.handlers.onStatus(status);
    });
    source.addEventListener('error', () => {
      if (this.#source !== source) return;
      this.handlers.onState('reconnecting');
      if (source.readyState === EventSource.CLOSED) void this.#afterClose(source);
    });
  }

  async #afterClose(source: EventSource): Promise<void> {
    source.close();
    this.#source = null;
    const worthRetrying = await this.handlers.onClosed().catch(() => true);
    if (this.#stopped || !worthRetrying) return;
    const delay = RETRY_DELAYS_MS[Math.min(this.#failures, RETRY_DELAYS_MS.length - 1)] ?? 10_000;
    this.#failures += 1;
    this.#retryTimer = window.setTimeout(() => this.#connect(), delay);
  }
}
