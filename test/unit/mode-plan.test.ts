import { describe, expect, it } from 'vitest';
import { crashBackoffMs } from '../../src/monitor/index.js';
import { MODES, type ModeCommand, nextDailyRestart, planModeChange } from '../../src/policy/index.js';

describe('mode changes (only down at run time)', () => {
  const table: Record<ModeCommand, Record<(typeof MODES)[number], string>> = {
    pause: { live: 'change:paused', paused: 'unchanged', rolled_back: 'refused' },
    resume: { live: 'unchanged', paused: 'change:live', rolled_back: 'refused' },
    rollback: { live: 'change:rolled_back', paused: 'change:rolled_back', rolled_back: 'unchanged' },
    rearm: { live: 'refused', paused: 'refused', rolled_back: 'change:live' },
  };
  for (const [command, row] of Object.entries(table) as [ModeCommand, Record<string, string>][]) {
    for (const mode of MODES) {
      it(`${command} from ${mode} → ${row[mode]}`, () => {
        const plan = planModeChange(mode, command);
        expect(plan.kind === 'change' ? `change:${plan.to}` : plan.kind).toBe(row[mode]);
      });
    }
  }

  it('resume after a rollback points to rearm', () => {
    const plan = planModeChange('rolled_back', 'resume');
    expect(plan.kind).toBe('refused');
    expect(plan.kind === 'refused' && plan.reason).toContain('valhalla rearm');
  });
});

describe('the daily restart time (02:00 UTC)', () => {
  it('is later today before 02:00, tomorrow at or after it', () => {
    expect(new Date(nextDailyRestart('02:00', Date.parse('2026-11-26T01:59:59Z'))).toISOString()).toBe(
      '2026-11-26T02:00:00.000Z',
    );
    expect(new Date(nextDailyRestart('02:00', Date.parse('2026-11-26T02:00:00Z'))).toISOString()).toBe(
      '2026-11-27T02:00:00.000Z',
    );
    expect(new Date(nextDailyRestart('02:00', Date.parse('2026-12-31T23:00:00Z'))).toISOString()).toBe(
      '2027-01-01T02:00:00.000Z',
    );
  });
});

describe('crash restarts back off', () => {
  it('1 s, 2 s, 4 s … capped at a minute', () => {
    expect([1, 2, 3, 4, 7, 8, 20].map(crashBackoffMs)).toEqual([
      1000, 2000, 4000, 8000, 60_000, 60_000, 60_000,
    ]);
  });
});
