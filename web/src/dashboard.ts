import { type Api, isApiError } from './api';
import { FlowChart } from './chart';
import { byId, describeError, h } from './dom';
import { LiveStream, type StreamState } from './events';
import { renderAlerts } from './panels/alerts';
import { AuditList } from './panels/audit-list';
import { renderCaps, renderErrorRate } from './panels/caps';
import { setupControls, showConfirmCycle } from './panels/controls';
import { renderGates } from './panels/gates';
import { HeartbeatClock, renderHeader, renderMode, streamStateText } from './panels/header';
import { renderLeadCounts } from './panels/leads';
import { QuarantinePanel } from './panels/quarantine';
import type { ReasonDialog } from './panels/reason-dialog';
import { isLeadFlowAction } from './summary';
import type { Alert, AuditEntry, Flow, Gates, Mode, Session, Status, StatusEvent } from './types';

type Task = 'status' | 'flow' | 'gates' | 'alerts' | 'audit' | 'quarantine';

// The stream pushes lead counts, mode and heartbeat; these reads fill in what it does not carry.
const POLL_MS: Record<Task, number> = {
  status: 10_000,
  flow: 30_000,
  gates: 60_000,
  alerts: 30_000,
  audit: 120_000,
  quarantine: 60_000,
};

export interface DashboardDeps {
  api: Api;
  session: Session;
  rollbackDialog: ReasonDialog;
  reasonDialog: ReasonDialog;
  /** The stream found the session gone. */
  onSessionLost(): void;
}

/** Everything shown once signed in: reads, the live stream and their timers, started and stopped as one. */
export class Dashboard {
  readonly #abort = new AbortController();
  readonly #heartbeat = new HeartbeatClock();
  readonly #chart = new FlowChart(byId('flow-chart'), byId('flow-chart-summary'));
  readonly #flow = new AuditList(byId('flow'), {
    limit: 50,
    accepts: (entry) => isLeadFlowAction(entry.action),
    detailed: false,
  });
  readonly #audit = new AuditList(byId('audit'), { limit: 20, accepts: () => true, detailed: true });
  readonly #quarantine: QuarantinePanel;
  readonly #stream: LiveStream;
  readonly #timers = new Map<Task, number>();
  readonly #intervals: number[] = [];
  readonly #running = new Set<Task>();
  readonly #again = new Set<Task>();
  readonly #failures = new Map<Task, string>();
  readonly #shown = new Map<Task, string>();
  #mode: Mode | null = null;
  /** The running service's phase, once a status read said it; the stream carries only the mode. */
  #phase: 3 | 4 | null = null;
  #stopped = false;

  constructor(private readonly deps: DashboardDeps) {
    const { api, session } = deps;
    const refreshAfterAction = () => {
      this.soon('status', 0);
      this.soon('alerts', 500);
    };
    setupControls({
      api,
      role: session.role,
      rollbackDialog: deps.rollbackDialog,
      reasonDialog: deps.reasonDialog,
      afterAction: refreshAfterAction,
      signal: this.#abort.signal,
    });
    this.#quarantine = new QuarantinePanel(
      api,
      session.role,
      deps.reasonDialog,
      refreshAfterAction,
      this.#abort.signal,
    );
    this.#stream = new LiveStream('/api/events', {
      onHello: () => {
        // On every (re)connect: catch up on whatever committed while the stream was down.
        this.soon('audit', 0);
        this.soon('status', 0);
      },
      onAudit: (entry) => this.#onAudit(entry),
      onStatus: (status) => this.#onStatus(status),
      onState: (state) => this.#showStreamState(state),
      onClosed: async () => {
        const session = await api.restoreSession().catch(() => undefined);
        if (session === null) {
          deps.onSessionLost();
          return false;
        }
        return true;
      },
    });
  }

  start(): void {
    this.#heartbeat.start();
    this.#stream.start();
    for (const task of Object.keys(POLL_MS) as Task[]) {
      this.soon(task, 0);
      this.#intervals.push(window.setInterval(() => this.soon(task, 0), POLL_MS[task]));
    }
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#abort.abort();
    this.#stream.stop();
    this.#heartbeat.stop();
    for (const interval of this.#intervals) window.clearInterval(interval);
    for (const timer of this.#timers.values()) window.clearTimeout(timer);
    this.#chart.destroy();
    // Nothing of this session stays in the page for whoever signs in next.
    this.#flow.clear();
    this.#audit.clear();
    this.#quarantine.clear();
    for (const id of ['lead-counts', 'gates', 'gates-missing', 'alerts', 'error-rate', 'activation']) {
      byId(id).replaceChildren();
    }
    for (const id of ['action-result', 'refresh-error', 'controls-note']) byId(id).textContent = '';
  }

  /** Run a read soon; a read already waiting or running is not queued twice, but one running is redone. */
  soon(task: Task, delayMs: number): void {
    if (this.#stopped || this.#timers.has(task)) return;
    if (this.#running.has(task)) {
      this.#again.add(task);
      return;
    }
    this.#timers.set(
      task,
      window.setTimeout(() => {
        this.#timers.delete(task);
        void this.#run(task);
      }, delayMs),
    );
  }

  async #run(task: Task): Promise<void> {
    this.#running.add(task);
    try {
      await this.#read(task);
      this.#failures.delete(task);
    } catch (error) {
      if (!(isApiError(error) && error.status === 401)) this.#failures.set(task, describeError(error));
    } finally {
      this.#running.delete(task);
      this.#showFailures();
      if (this.#again.delete(task)) this.soon(task, 0);
    }
  }

  async #read(task: Task): Promise<void> {
    const { api } = this.deps;
    switch (task) {
      case 'status': {
        const status = await api.get<Status>('/api/status');
        if (this.#stopped) return;
        this.#mode = status.mode;
        this.#phase = status.phase;
        renderHeader(status);
        renderLeadCounts(status.leads);
        renderCaps(status.caps);
        renderErrorRate(status.errorRate);
        showConfirmCycle(status.ramp?.confirmEachCycle === true && status.mode === 'live');
        this.#heartbeat.set(status.heartbeat?.ageSeconds ?? null, status.heartbeat?.limitSeconds);
        return;
      }
      case 'flow': {
        const flow = await api.get<Flow>('/api/flow?hours=24');
        if (!this.#stopped) this.#chart.update(flow);
        return;
      }
      case 'gates': {
        const gates = await api.get<Gates>('/api/gates');
        if (!this.#stopped && this.#changed(task, { ...gates, at: null })) renderGates(gates);
        return;
      }
      case 'alerts': {
        const { alerts } = await api.get<{ alerts: Alert[] }>('/api/alerts?limit=20');
        if (!this.#stopped && this.#changed(task, alerts)) renderAlerts(alerts);
        return;
      }
      case 'audit': {
        const { entries } = await api.get<{ entries: AuditEntry[] }>('/api/audit?limit=50');
        if (this.#stopped) return;
        this.#flow.merge(entries);
        this.#audit.merge(entries);
        return;
      }
      case 'quarantine':
        await this.#quarantine.load();
        return;
      default: {
        const unknown: never = task;
        throw new Error(`unknown task ${String(unknown)}`);
      }
    }
  }

  /**
   * Whether a read differs from the last one shown. A panel redrawn with the same data would lose
   * the keyboard focus and the open/closed state of what the operator is looking at.
   */
  #changed(task: Task, value: unknown): boolean {
    const text = JSON.stringify(value);
    if (this.#shown.get(task) === text) return false;
    this.#shown.set(task, text);
    return true;
  }

  #onAudit(entry: AuditEntry): void {
    this.#flow.add(entry);
    this.#audit.add(entry);
    const { action } = entry;
    if (action.startsWith('mode.') || action.startsWith('phase4.')) this.soon('status', 0);
    // A batch or a dry run moves the caps in use and the chart: read them soon, once per burst.
    if (action.startsWith('batch.')) {
      this.soon('status', 1000);
      this.soon('flow', 5000);
    }
    if (/quarantin|release/.test(action)) this.soon('quarantine', 1000);
    if (/^(gates|signature|signer|policy)\./.test(action)) this.soon('gates', 1000);
    // Many kinds of entry raise an alert; at most one read per few seconds keeps up without a flood.
    this.soon('alerts', 3000);
  }

  #onStatus(status: StatusEvent): void {
    if (status.leads && typeof status.leads === 'object') renderLeadCounts(status.leads);
    if (status.mode) {
      renderMode(status.mode, this.#phase);
      // A new mode changes more than the stream carries (ramp, error rate, alerts).
      if (this.#mode !== null && status.mode !== this.#mode) {
        this.soon('status', 0);
        this.soon('alerts', 500);
      }
      this.#mode = status.mode;
    }
    if ('heartbeatAgeSeconds' in status) this.#heartbeat.set(status.heartbeatAgeSeconds);
  }

  #showStreamState(state: StreamState): void {
    const indicator = byId('live-indicator');
    indicator.textContent = streamStateText(state);
    indicator.dataset.state = state;
    indicator.title = state === 'live' ? 'Updates connected' : 'Updates lost; reconnecting…';
  }

  #showFailures(): void {
    const line = byId('refresh-error');
    if (this.#failures.size === 0) {
      line.replaceChildren();
      return;
    }
    line.replaceChildren(
      'Could not refresh: ',
      ...[...this.#failures].flatMap(([task, message], i) => [
        i > 0 ? '; ' : '',
        h('strong', {}, task),
        ` (${message})`,
      ]),
    );
  }
}
