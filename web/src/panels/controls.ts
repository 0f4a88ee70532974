import { type Api, isApiError } from '../api';
import { byId, describeError } from '../dom';
import type { ModeResult, Role } from '../types';
import type { ReasonDialog } from './reason-dialog';

export type ResultKind = 'change' | 'unchanged' | 'refused' | 'error' | 'info';

/** The one line (role="status") that says what the last operator action did. */
export function showResult(message: string, kind: ResultKind): void {
  const line = byId('action-result');
  line.dataset.kind = kind;
  line.textContent = message;
}

export function canOperate(role: Role): boolean {
  return role === 'operator' || role === 'admin';
}

export const OPERATOR_ONLY = 'Needs the operator role: you are signed in as a viewer.';

type Command = 'rollback' | 'pause' | 'resume';

const COMMANDS: Record<Command, { label: string; title: string; description: string; confirm: string }> = {
  rollback: {
    label: 'Roll back',
    title: 'Roll back',
    description:
      'Stops every new outbound request; the result says whether the running worker acknowledged it, and how fast. The queue is kept; going live again needs a restart and a re-arm.',
    confirm: 'Confirm roll back',
  },
  pause: {
    label: 'Pause',
    title: 'Pause sending',
    description: 'No new outbound requests until an operator resumes.',
    confirm: 'Confirm pause',
  },
  resume: {
    label: 'Resume',
    title: 'Resume sending',
    description: 'Back to live from paused. (After a rollback the server refuses: that needs a restart.)',
    confirm: 'Confirm resume',
  },
};

function describeModeResult(label: string, result: ModeResult): { text: string; kind: ResultKind } {
  if (result.kind === 'refused')
    return { text: `${label}: refused, mode ${result.mode} — ${result.reason}`, kind: 'refused' };
  // A change the running service did not confirm is not reported as done: the operator must look.
  const confirmed = result.acknowledgement.kind === 'acknowledged';
  const what =
    result.kind === 'change'
      ? `${label}: change, ${result.from} → ${result.to}`
      : `${label}: unchanged, mode ${result.mode} — ${result.reason}`;
  return {
    text: `${what}. ${result.acknowledgementText}`,
    kind: confirmed ? result.kind : 'error',
  };
}

interface ControlsDeps {
  api: Api;
  role: Role;
  rollbackDialog: ReasonDialog;
  reasonDialog: ReasonDialog;
  /** Refresh what an action changes (status, alerts). */
  afterAction(): void;
  signal: AbortSignal;
}

/** The red Roll back button and Pause/Resume, each behind a dialog that asks for a reason. */
export function setupControls(deps: ControlsDeps): void {
  const allowed = canOperate(deps.role);
  for (const command of Object.keys(COMMANDS) as Command[]) {
    const button = byId<HTMLButtonElement>(command);
    button.disabled = !allowed;
    button.title = allowed ? COMMANDS[command].description : OPERATOR_ONLY;
    button.addEventListener('click', () => void run(command, deps), { signal: deps.signal });
  }
  const confirm = byId<HTMLButtonElement>('confirm-cycle');
  confirm.disabled = !allowed;
  confirm.title = allowed
    ? 'Ramp stage 1: every live cycle waits for an operator to confirm the one before (valhalla cycle confirm).'
    : OPERATOR_ONLY;
  confirm.addEventListener('click', () => void confirmCycle(deps), { signal: deps.signal });
  // A title is invisible on a touch screen: say it in the panel too.
  byId('controls-note').textContent = allowed ? '' : OPERATOR_ONLY;
}

/** Shown only while the ramp asks for each cycle to be confirmed. */
export function showConfirmCycle(needed: boolean): void {
  byId('confirm-cycle').hidden = !needed;
}

/** The review the server gives (GET /api/cycles/review): what the cycle sent and what the partner answered. */
type CycleReview =
  | {
      kind: 'awaiting';
      cycle: { id: number; finishedAt: string | null; claimed: number };
      batches: {
        batchKey: string;
        state: string;
        partnerStatus: number | null;
        partnerAnswer: string | null;
        leads: {
          id: number;
          name: string;
          email: string;
          score: number;
          state: string;
          /** Masked by the server: a personal attribute reads `***`. */
          attributes?: Record<string, string | number | boolean | null>;
        }[];
      }[];
    }
  | { kind: 'nothing'; waitingFor: string };

function describeReview(review: Extract<CycleReview, { kind: 'awaiting' }>): string {
  const batches = review.batches.map((b) => {
    const answer = b.partnerStatus === null ? 'no answer' : `HTTP ${b.partnerStatus}`;
    const leads = b.leads
      .map((l) => {
        const attributes = Object.entries(l.attributes ?? {})
          .map(([name, value]) => `${name}=${value ?? ''}`)
          .join(' ');
        return `#${l.id} ${l.name} ${l.email} score ${l.score}${attributes ? ` (${attributes})` : ''} → ${l.state}`;
      })
      .join('; ');
    return `batch ${b.batchKey.slice(0, 8)}…: ${b.state}, partner ${answer}${b.partnerAnswer ? ` (${b.partnerAnswer})` : ''}: ${leads}`;
  });
  return `Cycle ${review.cycle.id} sent ${review.cycle.claimed} lead(s). ${batches.join(' | ') || 'No batch.'}`;
}

/** Ramp stage 1: show what the cycle sent, and confirm that cycle only after the operator has seen it. */
async function confirmCycle(deps: ControlsDeps): Promise<void> {
  showResult('Confirm cycle: loading its batch…', 'info');
  try {
    const review = await deps.api.get<CycleReview>('/api/cycles/review');
    if (review.kind === 'nothing') {
      showResult(`Confirm cycle: nothing to confirm — ${review.waitingFor}`, 'unchanged');
      return;
    }
    const text = describeReview(review);
    showResult(text, 'info');
    const reason = await deps.reasonDialog.ask({
      title: `Confirm cycle ${review.cycle.id}`,
      description: `${text} Confirm only if this is what should have gone out.`,
      confirmLabel: `Confirm cycle ${review.cycle.id}`,
    });
    if (reason === null || deps.signal.aborted) return;
    const result = await deps.api.send<{ confirmed: number }>('POST', '/api/cycles/confirm', {
      cycleId: review.cycle.id,
    });
    showResult(`Confirm cycle: cycle ${result.confirmed} confirmed; the next may run`, 'change');
  } catch (error) {
    if (isApiError(error) && error.status === 401) return;
    showResult(`Confirm cycle: ${describeError(error)}`, 'refused');
  } finally {
    deps.afterAction();
  }
}

async function run(command: Command, deps: ControlsDeps): Promise<void> {
  const spec = COMMANDS[command];
  const dialog = command === 'rollback' ? deps.rollbackDialog : deps.reasonDialog;
  const reason = await dialog.ask({
    title: spec.title,
    description: spec.description,
    confirmLabel: spec.confirm,
  });
  if (reason === null || deps.signal.aborted) return;
  showResult(`${spec.label}: sending…`, 'info');
  try {
    const result = await deps.api.send<ModeResult>('POST', `/api/mode/${command}`, { reason });
    const { text, kind } = describeModeResult(spec.label, result);
    showResult(text, kind);
  } catch (error) {
    if (isApiError(error) && error.status === 401) return;
    showResult(`${spec.label} failed: ${describeError(error)}`, 'error');
  } finally {
    deps.afterAction();
  }
}
