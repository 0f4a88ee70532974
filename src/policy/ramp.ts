/** One ramp stage of the policy file: the leads/cycle ceiling from an hour after go-live on. */
export interface RampStageRule {
  fromHour: number;
  /** null: the configured cap (day 2+). */
  leadsPerCycle: number | null;
  confirmEachCycle: boolean;
}

export interface RampPosition {
  /** 1-based stage number, as operators speak of it. */
  stage: number;
  /** The stage's ceiling, with the configured cap applied. */
  ceiling: number;
  confirmEachCycle: boolean;
  /** When the next stage starts (ms), or null in the last stage. */
  nextStageAt: number | null;
}

const HOUR_MS = 3_600_000;

/**
 * The ramp stage at `now` for a go-live at `goLiveAt` (null: not live yet, stage 1). A clock that
 * reads earlier than go-live also gives stage 1: stages never go up early.
 */
export function rampPosition(
  stages: readonly RampStageRule[],
  goLiveAt: number | null,
  now: number,
  cap: number,
): RampPosition {
  const elapsedHours = goLiveAt === null || now < goLiveAt ? 0 : (now - goLiveAt) / HOUR_MS;
  let index = 0;
  for (let i = 0; i < stages.length; i++) if (stages[i]!.fromHour <= elapsedHours) index = i;
  const stage = stages[index]!;
  const next = stages[index + 1];
  return {
    stage: index + 1,
    ceiling: Math.min(stage.leadsPerCycle ?? cap, cap),
    confirmEachCycle: stage.confirmEachCycle,
    nextStageAt: next === undefined || goLiveAt === null ? null : goLiveAt + next.fromHour * HOUR_MS,
  };
}
