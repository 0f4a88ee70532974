/** The persisted operational state: the mode. */
export type Mode = 'live' | 'paused' | 'rolled_back';
export const MODES: readonly Mode[] = ['live', 'paused', 'rolled_back'];

/** What an operator or a monitor asks of the mode. */
export type ModeCommand = 'pause' | 'resume' | 'rollback' | 'rearm';

export type ModeChange =
  | { kind: 'change'; from: Mode; to: Mode }
  | { kind: 'unchanged'; mode: Mode; reason: string }
  | { kind: 'refused'; mode: Mode; reason: string };

/**
 * The mode only moves down at run time (live → paused → rolled_back); paused → live is an operator's
 * resume; rolled_back → live only by `rearm`, whose further conditions (restart, gates) the caller checks.
 */
export function planModeChange(current: Mode, command: ModeCommand): ModeChange {
  switch (command) {
    case 'pause':
      if (current === 'live') return { kind: 'change', from: current, to: 'paused' };
      if (current === 'paused') return { kind: 'unchanged', mode: current, reason: 'already paused' };
      return {
        kind: 'refused',
        mode: current,
        reason: 'rolled back: nothing is sent; pausing changes nothing',
      };
    case 'resume':
      if (current === 'paused') return { kind: 'change', from: current, to: 'live' };
      if (current === 'live') return { kind: 'unchanged', mode: current, reason: 'already live' };
      return {
        kind: 'refused',
        mode: current,
        reason:
          'rolled back: resume does not undo a rollback; restart in Phase 4 with the gates verified, then `valhalla rearm`',
      };
    case 'rollback':
      if (current === 'rolled_back')
        return { kind: 'unchanged', mode: current, reason: 'already rolled back' };
      return { kind: 'change', from: current, to: 'rolled_back' };
    case 'rearm':
      if (current === 'rolled_back') return { kind: 'change', from: current, to: 'live' };
      return {
        kind: 'refused',
        mode: current,
        reason: `mode is ${current}, not rolled_back: nothing to re-arm`,
      };
  }
}

/** The next daily restart (`HH:MM` UTC) strictly after `after`. */
export function nextDailyRestart(hhmm: string, after: number): number {
  const [h, m] = hhmm.split(':').map(Number) as [number, number];
  const day = new Date(after);
  const candidate = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), h, m);
  return candidate > after ? candidate : candidate + 86_400_000;
}
