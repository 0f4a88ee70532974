/**
 * A small client for the admin API over real HTTP (undici, real sockets): who is calling (a bearer
 * token, or a session cookie with its anti-forgery token and an Origin), the body, and the answer
 * read whole. An event stream is answered with its headers only; `openEventStream` reads one.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'undici';

export interface ApiErrorBody {
  error: { code: string; message: string };
}

export interface CallOptions {
  token?: string;
  /** `name=value` of the session cookie. */
  cookie?: string;
  csrf?: string;
  origin?: string;
  /** Sent as application/json. */
  json?: unknown;
  /** Sent as is, with `type`. */
  body?: string | Buffer;
  type?: string;
  headers?: Record<string, string>;
  /** Give up when the answer's headers (or its body) take longer than this; undici's default is 300 s. */
  timeoutMs?: number;
}

export interface ApiResponse<T> {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The parsed body when it is JSON, else null. */
  body: T;
}

export type Method = 'GET' | 'HEAD' | 'POST' | 'DELETE';

export type ApiCall = <T = ApiErrorBody>(
  method: Method,
  path: string,
  options?: CallOptions,
) => Promise<ApiResponse<T>>;

function requestHeaders(options: CallOptions): Record<string, string> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (options.cookie !== undefined) headers.cookie = options.cookie;
  if (options.csrf !== undefined) headers['x-csrf-token'] = options.csrf;
  if (options.origin !== undefined) headers.origin = options.origin;
  if (options.json !== undefined) headers['content-type'] = 'application/json';
  else if (options.type !== undefined) headers['content-type'] = options.type;
  return headers;
}

/** Calls against the server at `baseUrl` (`http://host:port`). */
export function apiClient(baseUrl: string): ApiCall {
  return async <T>(method: Method, path: string, options: CallOptions = {}) => {
    const response = await request(`${baseUrl}${path}`, {
      method,
      headers: requestHeaders(options),
      body: options.json !== undefined ? JSON.stringify(options.json) : options.body,
      ...(options.timeoutMs === undefined
        ? {}
        : { headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs }),
    });
    const type = String(response.headers['content-type'] ?? '');
    if (type.startsWith('text/event-stream')) {
      // A stream never ends on its own: its status and headers are the answer. Destroying the body
      // aborts it, which the body reports as an error: expected here, not a failure.
      response.body.on('error', () => undefined);
      response.body.destroy();
      return { status: response.statusCode, headers: response.headers, text: '', body: null as T };
    }
    const text = await response.body.text();
    const body = type.includes('json') && text !== '' ? (JSON.parse(text) as T) : (null as T);
    return { status: response.statusCode, headers: response.headers, text, body };
  };
}

export interface ServerEvent {
  event: string;
  data: unknown;
}

export interface EventStream {
  status: number;
  headers: IncomingHttpHeaders;
  /** Every event received so far, in order. */
  readonly events: readonly ServerEvent[];
  /** Everything received so far, as sent. */
  readonly raw: string;
  /** The first event (received already or to come) that matches, or a rejection after `timeoutMs`. */
  waitFor(match: (event: ServerEvent) => boolean, timeoutMs: number): Promise<ServerEvent>;
  ended(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** Open `GET <baseUrl>/api/events` and parse Server-Sent Events as they arrive. */
export async function openEventStream(baseUrl: string, options: CallOptions): Promise<EventStream> {
  const abort = new AbortController();
  const response = await request(`${baseUrl}/api/events`, {
    method: 'GET',
    headers: requestHeaders(options),
    signal: abort.signal,
  });
  const events: ServerEvent[] = [];
  const waiters = new Set<() => void>();
  let raw = '';
  let pending = '';
  const reading = (async () => {
    try {
      for await (const chunk of response.body) {
        const text = (chunk as Buffer).toString('utf8');
        raw += text;
        pending += text;
        let end = pending.indexOf('\n\n');
        while (end >= 0) {
          const block = pending.slice(0, end);
          pending = pending.slice(end + 2);
          end = pending.indexOf('\n\n');
          const lines = block.split('\n');
          const event = lines.find((l) => l.startsWith('event: '))?.slice(7);
          const data = lines
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (event === undefined) continue; // a keepalive comment
          events.push({ event, data: data === '' ? null : (JSON.parse(data) as unknown) });
          for (const wake of waiters) wake();
        }
      }
    } catch {
      // Aborted by close(), or the server ended the stream.
    }
  })();

  return {
    status: response.statusCode,
    headers: response.headers,
    events,
    get raw() {
      return raw;
    },
    waitFor(match, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(match);
          if (!found) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `no matching event within ${timeoutMs} ms; received: ${events.map((e) => e.event).join(', ')}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    /** Resolves when the server ends the stream; rejects if it is still open after `timeoutMs`. */
    ended(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the stream was still open after ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
      return Promise.race([reading, timeout]).finally(() => clearTimeout(timer));
    },
    async close() {
      abort.abort();
      await reading;
    },
  };
}
