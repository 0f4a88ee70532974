import { X509Certificate } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Agent, Dispatcher } from 'undici';
import type { ConcurrencyGate } from './concurrency.js';
import { OutboundError } from './errors.js';
import type { RatePermit, SlidingWindowLimiter, StartLimiter } from './limiter.js';
import { tlsAgent } from './tls-agent.js';

/** Bytes of a refused response read before the connection is dropped (it is never parsed). */
const DISCARD_LIMIT_BYTES = 64 * 1024;

export interface TransportOptions {
  /** PEM bundle of the CA(s) trusted for the partner; replaces the system store when given. */
  caPem?: string | undefined;
  maxConcurrent: number;
  timeoutMs: number;
  maxResponseBytes: number;
  limiter: SlidingWindowLimiter;
  /** The shared start log, passed after `limiter` (several runners on one database). */
  startLimiter?: StartLimiter | undefined;
  gate: ConcurrencyGate;
  monotonicNow: () => number;
}

export interface ExchangeRequest {
  method: 'GET' | 'POST';
  url: URL;
  headers: Record<string, string>;
  body?: string;
  /** Read (capped) the body of a 2xx answer; any other body is discarded unread. */
  readBody: boolean;
  signal?: AbortSignal | undefined;
  /** Stops the request from starting (while it waits for a slot or a permit); never cuts it once sent. */
  holdNew?: AbortSignal | undefined;
}

/** One request's result as plain data: a response (any status), or a failure with its error code. */
export type Exchange =
  | {
      kind: 'response';
      status: number;
      headers: IncomingHttpHeaders;
      /** The 2xx body when asked for; null when not read or over the size cap. */
      body: Buffer | null;
      /** True when the body was bigger than the cap: it was discarded and the connection dropped. */
      bodyTooLarge: boolean;
      ms: number;
    }
  | {
      kind: 'failure';
      /** Node's or undici's error code; `UND_ERR_ABORTED` when our timeout or the caller aborted. */
      code: string;
      timedOut: boolean;
      cancelled: boolean;
      ms: number;
    };

/**
 * Asked once the request holds its concurrency slot and rate permit, just before it starts: headers
 * decided at the last moment (the bearer token, which may have aged while the request waited), or
 * null not to start the request at all.
 */
export type BeforeStart = () => Record<string, string> | null;

/** `BeforeStart` declined: nothing was sent. The unused permit still counts as a start (it may not be reused). */
export interface NotStarted {
  kind: 'not_started';
  /** How long the request waited for its slot and permit. */
  waitedMs: number;
}

/**
 * The only socket-level code of the product: an undici Agent with TLS ≥ 1.2 pinned in code, the CA
 * pinned when given, every undici timeout set (its defaults are 300 s), an overall deadline per
 * request, a response size cap, and every request passing the concurrency gate and the rate limiter.
 */
export class Transport {
  readonly #agent: Agent;
  readonly #options: TransportOptions;
  readonly #inFlight = new Set<Promise<unknown>>();
  #closing: Promise<void> | null = null;

  constructor(options: TransportOptions) {
    this.#options = options;
    const { caPem, maxConcurrent, timeoutMs } = options;
    if (caPem !== undefined) checkCaPem(caPem);
    this.#agent = tlsAgent({ caPem, connections: maxConcurrent, timeoutMs });
  }

  get closed(): boolean {
    return this.#closing !== null;
  }

  /**
   * Make one request. Waits for a concurrency slot, then a rate permit, then dispatches with an
   * overall deadline of `timeoutMs`. Never throws for network or partner failures; throws
   * `CLIENT_CLOSED` or `CANCELLED` only when nothing was sent.
   */
  exchange(request: ExchangeRequest, beforeStart?: () => Record<string, string>): Promise<Exchange>;
  /** The same, with a last look (`beforeStart`) once the slot and permit are held, which may decline. */
  exchange(request: ExchangeRequest, beforeStart: BeforeStart): Promise<Exchange | NotStarted>;
  async exchange(request: ExchangeRequest, beforeStart?: BeforeStart): Promise<Exchange | NotStarted> {
    if (this.#closing)
      throw new OutboundError('CLIENT_CLOSED', 'the partner client is closed; nothing was sent');
    const { gate, limiter, monotonicNow } = this.#options;
    const waitingSince = monotonicNow();
    const { signal, holdNew } = request;
    const waiting = holdNew && signal ? AbortSignal.any([signal, holdNew]) : (holdNew ?? signal);
    const releaseSlot = await gate.acquire(waiting);
    let permit: RatePermit;
    try {
      permit = await limiter.acquire(waiting);
      if (this.#options.startLimiter) permit = await both(permit, this.#options.startLimiter, waiting);
    } catch (error) {
      releaseSlot();
      throw error;
    }
    if (holdNew?.aborted) {
      permit.release();
      releaseSlot();
      throw new OutboundError(
        'CANCELLED',
        'outbound was stopped before the request started; nothing was sent',
      );
    }
    if (this.#closing) {
      // Closed while this request waited: it never went out, and the permit counts as a start anyway.
      permit.release();
      releaseSlot();
      throw new OutboundError('CLIENT_CLOSED', 'the partner client is closed; nothing was sent');
    }
    let headers = request.headers;
    if (beforeStart) {
      const lastHeaders = beforeStart();
      if (lastHeaders === null) {
        permit.release();
        releaseSlot();
        return { kind: 'not_started', waitedMs: monotonicNow() - waitingSince };
      }
      headers = { ...headers, ...lastHeaders };
    }
    const running = this.#dispatch({ ...request, headers }, permit).finally(() => {
      permit.release();
      releaseSlot();
    });
    this.#inFlight.add(running);
    try {
      return await running;
    } finally {
      this.#inFlight.delete(running);
    }
  }

  /** Refuse new requests, let the ones in flight finish (each bounded by its deadline), release sockets. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#inFlight]);
      await this.#agent.close();
    })();
    return this.#closing;
  }

  async #dispatch(request: ExchangeRequest, permit: RatePermit): Promise<Exchange> {
    const { timeoutMs, maxResponseBytes, monotonicNow } = this.#options;
    const started = monotonicNow();
    const abort = new AbortController();
    let timedOut = false;
    let cancelled = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort(abortedError(`no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onCallerAbort = () => {
      cancelled = true;
      abort.abort(abortedError('cancelled by the caller'));
    };
    request.signal?.addEventListener('abort', onCallerAbort, { once: true });
    if (request.signal?.aborted) onCallerAbort();
    // A dispatcher per request, so the permit learns the moment the partner's answer begins.
    const dispatcher = this.#agent.compose(
      (dispatch) => (opts, handler) => dispatch(opts, new AnswerMarker(handler, permit)),
    );
    try {
      const response = await dispatcher.request({
        origin: request.url.origin,
        path: `${request.url.pathname}${request.url.search}`,
        method: request.method,
        headers: request.headers,
        body: request.body ?? null,
        signal: abort.signal,
      });
      const success = response.statusCode >= 200 && response.statusCode <= 299;
      let body: Buffer | null = null;
      let bodyTooLarge = false;
      if (success && request.readBody) {
        body = await readCapped(response, maxResponseBytes);
        bodyTooLarge = body === null;
      } else {
        await response.body.dump({ limit: DISCARD_LIMIT_BYTES });
      }
      return {
        kind: 'response',
        status: response.statusCode,
        headers: response.headers,
        body,
        bodyTooLarge,
        ms: monotonicNow() - started,
      };
    } catch (error) {
      return {
        kind: 'failure',
        code: timedOut || cancelled ? 'UND_ERR_ABORTED' : errorCode(error),
        timedOut,
        cancelled,
        ms: monotonicNow() - started,
      };
    } finally {
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', onCallerAbort);
    }
  }
}

/** Read a body up to `cap` bytes; null (body discarded, connection dropped) when it is bigger. */
async function readCapped(response: Dispatcher.ResponseData, cap: number): Promise<Buffer | null> {
  // Destroying the body makes it emit an AbortError: expected here, never an uncaught exception.
  response.body.on('error', () => undefined);
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > cap) {
    response.body.destroy();
    return null;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += (chunk as Buffer).length;
    if (size > cap) {
      response.body.destroy();
      return null;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}

/** Tells a rate permit when the partner's answer begins: by then it has certainly seen the request. */
class AnswerMarker implements Dispatcher.DispatchHandler {
  readonly #inner: Dispatcher.DispatchHandler;
  readonly #permit: RatePermit;
  constructor(inner: Dispatcher.DispatchHandler, permit: RatePermit) {
    this.#inner = inner;
    this.#permit = permit;
  }
  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.#inner.onRequestStart?.(controller, context);
  }
  onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    socket: import('node:stream').Duplex,
  ): void {
    this.#inner.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    this.#permit.markAnswered();
    this.#inner.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#inner.onResponseData?.(controller, chunk);
  }
  onResponseEnd(controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.#inner.onResponseEnd?.(controller, trailers);
  }
  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.#inner.onResponseError?.(controller, error);
  }
}

function abortedError(message: string): Error {
  return Object.assign(new Error(message), { code: 'UND_ERR_ABORTED' });
}

/** The most specific string code on an error, its first aggregated error, or its cause. */
export function errorCode(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth++) {
    const { code, errors, cause } = current as { code?: unknown; errors?: unknown; cause?: unknown };
    if (typeof code === 'string' && code !== '') return code;
    current = Array.isArray(errors) && errors.length > 0 ? errors[0] : cause;
  }
  return 'UNKNOWN';
}

function checkCaPem(caPem: string): void {
  const blocks = caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    throw new OutboundError('INVALID_OPTIONS', 'caPem holds no PEM certificate');
  }
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (cause) {
      throw new OutboundError('INVALID_OPTIONS', 'caPem holds a certificate that does not parse', { cause });
    }
  }
}

/** The local permit and then the shared one; a refusal of the shared one releases the local one. */
async function both(
  local: RatePermit,
  shared: StartLimiter,
  signal: AbortSignal | undefined,
): Promise<RatePermit> {
  let second: RatePermit;
  try {
    second = await shared.acquire(signal);
  } catch (error) {
    local.release();
    throw error;
  }
  return {
    markAnswered() {
      local.markAnswered();
      second.markAnswered();
    },
    release() {
      local.release();
      second.release();
    },
  };
}
