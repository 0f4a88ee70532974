import { Agent } from 'undici';

/**
 * An undici Agent for the product's outbound HTTPS: TLS ≥ 1.2 pinned in code, certificates checked,
 * the CA pinned when given, and every undici timeout set (its defaults are 300 s). The partner client
 * and the alert channels both use it.
 */
export function tlsAgent(options: {
  caPem?: string | undefined;
  connections: number;
  timeoutMs: number;
}): Agent {
  const { caPem, connections, timeoutMs } = options;
  return new Agent({
    connections,
    pipelining: 1,
    connect: {
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      ...(caPem === undefined ? {} : { ca: caPem }),
      timeout: timeoutMs,
    },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 30_000,
  });
}

/** Settle with `work`, or reject with `onAbort()` as soon as `signal` aborts (the work itself goes on). */
export function settleOrAbort<T>(work: Promise<T>, signal: AbortSignal, onAbort: () => unknown): Promise<T> {
  if (signal.aborted) return Promise.reject(onAbort());
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(onAbort());
    signal.addEventListener('abort', abort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', abort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(error);
      },
    );
  });
}
