import type { Session } from './types';

/** A refused or failed API call: the HTTP status and the server's error code and message. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** From `Retry-After` (429), in whole seconds. */
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }
}

export function isApiError(error: unknown): error is ApiError {
  return error instanceof ApiError;
}

/** `Retry-After` is either delta-seconds or an HTTP date. */
function parseRetryAfter(value: string | null): number | null {
  if (value === null || value.trim() === '') return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

async function errorFrom(response: Response): Promise<ApiError> {
  let code = `HTTP_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === 'string') code = body.error.code;
    if (typeof body.error?.message === 'string') message = body.error.message;
  } catch {
    // Not JSON (a proxy's error page): the status line is all there is.
  }
  return new ApiError(response.status, code, message, parseRetryAfter(response.headers.get('Retry-After')));
}

interface RequestOptions {
  /** A 401 is the expected answer (sign-in, session probe): do not treat it as a lost session. */
  expect401?: boolean;
}

/**
 * The dashboard's only door to the server: adds the CSRF token to every state-changing request and
 * reports a 401 anywhere as a lost session, so one handler can send the user back to sign-in.
 */
export class Api {
  #csrfToken: string | null = null;

  constructor(private readonly onUnauthorized: () => void) {}

  get<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.#request<T>('GET', path, undefined, options);
  }

  send<T>(method: 'POST' | 'DELETE', path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    return this.#request<T>(method, path, body, options);
  }

  async #request<T>(method: string, path: string, body: unknown, options: RequestOptions): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (method !== 'GET' && this.#csrfToken !== null) headers['X-CSRF-Token'] = this.#csrfToken;
    // Only with a body: Fastify answers 400 to an empty body declared as JSON (e.g. DELETE).
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 401 && !options.expect401) {
        this.#csrfToken = null;
        this.onUnauthorized();
      }
      throw error;
    }
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  /** The current session, or null when not signed in. */
  async restoreSession(): Promise<Session | null> {
    try {
      const session = await this.get<Session>('/api/session', { expect401: true });
      this.#csrfToken = session.csrfToken;
      return session;
    } catch (error) {
      if (isApiError(error) && error.status === 401) return null;
      throw error;
    }
  }

  async signIn(token: string): Promise<Session> {
    const session = await this.send<Session>('POST', '/api/session', { token }, { expect401: true });
    this.#csrfToken = session.csrfToken;
    return session;
  }

  async signOut(): Promise<void> {
    try {
      await this.send<void>('DELETE', '/api/session', undefined, { expect401: true });
    } finally {
      this.#csrfToken = null;
    }
  }
}
