import { byId, formatDateTime, setText } from '../dom';
import type { Mode, Status } from '../types';

const MODE_LABELS: Record<Mode, string> = {
  live: 'Sending is allowed (subject to the guard).',
  paused: 'Paused: no outbound requests; an operator can resume.',
  rolled_back:
    'Rolled back: outbound stopped; the queue is kept. Live again only after a restart and re-arm.',
};

/**
 * What the mode badge says. Phase 3 never sends, so its `live` mode is shown as DRY-RUN; until the
 * phase is known a `live` mode is not claimed either.
 */
function modeBadge(mode: Mode, phase: 3 | 4 | null): { text: string; state: string; title: string } {
  if (mode !== 'live' || phase === 4) return { text: mode, state: mode, title: MODE_LABELS[mode] ?? '' };
  if (phase === 3) {
    return {
      text: 'DRY-RUN',
      state: 'dry_run',
      title: 'Phase 3: cycles run as dry runs; nothing is sent to the partner.',
    };
  }
  return { text: '…', state: 'unknown', title: 'Waiting for the phase' };
}

/** The mode badge; `phase` is the running service's, null until a status read said it. */
export function renderMode(mode: Mode, phase: 3 | 4 | null): void {
  const badge = modeBadge(mode, phase);
  const element = setText('mode', badge.text);
  element.dataset.mode = badge.state;
  element.title = badge.title;
}

/** The stream's state in words: `live` would read as live sending, which Phase 3 never does. */
export function streamStateText(state: 'live' | 'reconnecting'): string {
  return state === 'live' ? 'connected' : 'reconnecting';
}

/** The phase, mode, ramp and gate summary at the top of the dashboard. */
export function renderHeader(status: Status): void {
  const phase = setText('phase', status.phase === 4 ? '4 LIVE' : '3 DRY-RUN');
  phase.dataset.phase = String(status.phase);
  renderMode(status.mode, status.phase);

  const ramp = status.ramp;
  const rampText =
    ramp === null
      ? status.phase === 3
        ? 'none (dry-run)'
        : 'not live'
      : `stage ${ramp.stage} · ceiling ${ramp.ceiling}/cycle${ramp.confirmEachCycle ? ' · confirm each cycle' : ''}`;
  const rampElement = setText('ramp', rampText);
  rampElement.title =
    ramp?.nextStageAt != null ? `next stage at ${formatDateTime(ramp.nextStageAt)}` : 'no ramp stage ahead';

  const { cleared, missing, reason } = status.gates;
  const gates = setText(
    'gates-cleared',
    cleared ? 'cleared' : typeof missing === 'number' ? `not cleared (${missing} missing)` : 'not cleared',
  );
  gates.title = reason ?? '';
  gates.dataset.ok = String(cleared);
  setText('database', status.database);
  // Phase, policy and caps above are the running service's; say so when this server's own differ.
  const differs = byId('config-differs');
  const differences = status.service?.differences ?? [];
  differs.hidden = differences.length === 0;
  differs.textContent =
    differences.length === 0
      ? ''
      : `This server's configuration differs from the running service: ${differences.join('; ')} (it applies only when the service restarts).`;
  const leader = status.leader ?? null;
  const leaderElement = setText(
    'leader',
    leader === null
      ? 'none yet'
      : `${leader.holder} · ${leader.lease === 'held' ? 'lease held' : leader.lease === 'lapsed' ? `lease LAPSED ${leader.seconds} s ago` : 'lease released'}`,
  );
  leaderElement.title = leader === null ? '' : `pid ${leader.pid} on ${leader.host}, epoch ${leader.epoch}`;
  // Green while a runner holds the lease, red once it lapsed unrenewed; no colour while none leads.
  leaderElement.dataset.ok = leader?.lease === 'held' ? 'true' : leader?.lease === 'lapsed' ? 'false' : '';
  setText('go-live-at', status.goLiveAt === null ? 'not yet' : formatDateTime(status.goLiveAt));
}

/**
 * The worker's heartbeat age, counted up locally between server updates so a stalled worker turns
 * red on screen even when nothing else arrives.
 */
export class HeartbeatClock {
  #ageSeconds: number | null = null;
  #limitSeconds = 45;
  #receivedAt = 0;
  #timer: number | undefined;

  start(): void {
    this.stop();
    this.#timer = window.setInterval(() => this.#render(), 1000);
  }

  stop(): void {
    window.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  set(ageSeconds: number | null, limitSeconds?: number): void {
    this.#ageSeconds = ageSeconds;
    if (limitSeconds !== undefined) this.#limitSeconds = limitSeconds;
    this.#receivedAt = performance.now();
    this.#render();
  }

  #render(): void {
    const element = byId('heartbeat-age');
    if (this.#ageSeconds === null) {
      element.textContent = 'none';
      element.dataset.stale = 'true';
      element.title = 'No heartbeat recorded: the worker is not running.';
      return;
    }
    const age = Math.floor(this.#ageSeconds + (performance.now() - this.#receivedAt) / 1000);
    element.textContent = `${age} s`;
    element.dataset.stale = String(age > this.#limitSeconds);
    element.title = `limit ${this.#limitSeconds} s`;
  }
}
