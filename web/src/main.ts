import './styles.css';
import { Api, isApiError } from './api';
import { Dashboard } from './dashboard';
import { byId, describeError } from './dom';
import { showResult } from './panels/controls';
import { ReasonDialog } from './panels/reason-dialog';
import type { Session } from './types';

const rollbackDialog = new ReasonDialog(byId<HTMLDialogElement>('rollback-dialog'), {
  reason: byId<HTMLTextAreaElement>('rollback-reason'),
  confirm: byId<HTMLButtonElement>('rollback-confirm'),
  title: byId('rollback-title'),
  description: byId('rollback-description'),
});
const reasonDialog = new ReasonDialog(byId<HTMLDialogElement>('reason-dialog'), {
  reason: byId<HTMLTextAreaElement>('reason-text'),
  confirm: byId<HTMLButtonElement>('reason-confirm'),
  title: byId('reason-title'),
  description: byId('reason-description'),
});

let dashboard: Dashboard | null = null;

const api = new Api(() => sessionLost());

function sessionLost(): void {
  if (dashboard === null) return;
  showSignIn('Your session has ended. Sign in again.');
}

function closeDialogs(): void {
  for (const dialog of document.querySelectorAll('dialog')) if (dialog.open) dialog.close();
}

function showSignIn(message = ''): void {
  dashboard?.stop();
  dashboard = null;
  closeDialogs();
  byId('booting').hidden = true;
  byId('dashboard').hidden = true;
  byId('session-bar').hidden = true;
  byId('whoami').textContent = '';
  byId('sign-in-view').hidden = false;
  byId('sign-in-error').textContent = message;
  byId<HTMLInputElement>('token').focus();
}

function showDashboard(session: Session): void {
  dashboard?.stop();
  byId('booting').hidden = true;
  byId('sign-in-view').hidden = true;
  byId('sign-in-error').textContent = '';
  byId('whoami').textContent = `${session.name} (${session.role})`;
  byId('whoami').dataset.role = session.role;
  byId('session-bar').hidden = false;
  byId('dashboard').hidden = false;
  dashboard = new Dashboard({ api, session, rollbackDialog, reasonDialog, onSessionLost: sessionLost });
  dashboard.start();
}

function signInMessage(error: unknown): string {
  if (!isApiError(error)) return `Cannot reach the server: ${describeError(error)}`;
  if (error.status === 429) {
    return error.retryAfterSeconds === null
      ? 'too many attempts, try again later'
      : `too many attempts, try again in ${error.retryAfterSeconds} s`;
  }
  if (error.status === 401) return error.message || 'That token is not valid.';
  return error.message;
}

byId<HTMLFormElement>('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = byId<HTMLInputElement>('token');
  const button = byId<HTMLButtonElement>('sign-in');
  const token = input.value.trim();
  if (token === '') {
    byId('sign-in-error').textContent = 'Enter your API token.';
    input.focus();
    return;
  }
  button.disabled = true;
  byId('sign-in-error').textContent = '';
  try {
    const session = await api.signIn(token);
    input.value = '';
    showDashboard(session);
  } catch (error) {
    byId('sign-in-error').textContent = signInMessage(error);
    input.select();
  } finally {
    button.disabled = false;
  }
});

byId('sign-out').addEventListener('click', async () => {
  try {
    await api.signOut();
  } catch (error) {
    // Still signed in on the server: say so rather than pretend.
    if (!(isApiError(error) && error.status === 401)) {
      showResult(`Sign out failed: ${describeError(error)}`, 'error');
      return;
    }
  }
  showSignIn();
});

async function boot(): Promise<void> {
  try {
    const session = await api.restoreSession();
    if (session === null) showSignIn();
    else showDashboard(session);
  } catch (error) {
    showSignIn(`Cannot reach the server: ${describeError(error)}`);
  }
}

void boot();
