import { isStoreError } from './errors.js';

/** Node socket errors that mean the database server is gone or unreachable. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
/** pg's own words when a connection ends under a query or cannot be made. */
const PG_MESSAGES = [
  'Connection terminated',
  'Client has encountered a connection error',
  'timeout exceeded when trying to connect',
  'Client was closed and is not queryable',
];

/**
 * Whether `error` says the database connection was lost or could not be made (as opposed to a
 * refused statement or a bug): PostgreSQL's connection classes (08…, 57P01-57P03: terminated,
 * crash shutdown, cannot connect now), socket errors, pg's own messages, or the store's
 * DATABASE_UNAVAILABLE. Looks through `cause` chains.
 */
export function isConnectionLoss(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (isStoreError(e) && e.code === 'DATABASE_UNAVAILABLE') return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
      if (SOCKET_CODES.has(code)) return true;
    }
    if (PG_MESSAGES.some((m) => e instanceof Error && e.message.includes(m))) return true;
  }
  return false;
}
