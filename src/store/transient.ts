import { isConnectionLoss } from './connection-loss.js';

/**
 * A database error that passes: the connection lost, a deadlock, a serialisation or lock conflict
 * (PostgreSQL 40P01, 40001, 55P03; SQLite busy). Retrying the same work later may succeed.
 */
export function isTransient(error: unknown): boolean {
  if (isConnectionLoss(error)) return true;
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === '40P01' || code === '40001' || code === '55P03') return true;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT') return true;
  }
  return false;
}

/**
 * Two transactions inserted the same key at once and this one lost (PostgreSQL's unique violation,
 * 23505). SQLite has one writer at a time, so it never reports such a race.
 */
export function isConcurrentInsert(error: unknown): boolean {
  return error instanceof Error && (error as { code?: unknown }).code === '23505';
}
