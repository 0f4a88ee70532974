/**
 * Which errors end a runner's term (the database lost) rather than the process (a bug): the
 * classification `valhalla run`'s worker uses to fail closed and stand by until the database answers.
 */
import { describe, expect, it } from 'vitest';
import { isConnectionLoss, StoreError } from '../../src/store/index.js';

function coded(code: string, message = 'x'): Error {
  return Object.assign(new Error(message), { code });
}

describe('isConnectionLoss', () => {
  it.each([
    [
      'terminated by an administrator (57P01)',
      coded('57P01', 'terminating connection due to administrator command'),
    ],
    ['the server shutting down (57P02)', coded('57P02')],
    ['the server starting (57P03)', coded('57P03')],
    ['a connection exception class 08', coded('08006')],
    ['refused', coded('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')],
    ['reset', coded('ECONNRESET')],
    ["pg's own words", new Error('Connection terminated unexpectedly')],
    ['a pool timeout', new Error('timeout exceeded when trying to connect')],
    ['the store unable to open', new StoreError('DATABASE_UNAVAILABLE', 'cannot connect to PostgreSQL')],
    ['wrapped as a cause', new Error('cycle failed', { cause: coded('ECONNRESET') })],
  ])('%s: the database is lost', (_, error) => {
    expect(isConnectionLoss(error)).toBe(true);
  });

  it.each([
    ['a unique violation (23505)', coded('23505', 'duplicate key value violates unique constraint')],
    ['permission denied (42501)', coded('42501', 'permission denied for table audit_log')],
    ['a trigger refusing (P0001)', coded('P0001', 'valhalla: the audit chain is append-only')],
    ['a migration refused', new StoreError('SCHEMA_TOO_NEW', 'newer release')],
    ['a plain bug', new TypeError("Cannot read properties of undefined (reading 'id')")],
    ['not an error at all', 'ECONNRESET'],
  ])('%s: not a lost database', (_, error) => {
    expect(isConnectionLoss(error)).toBe(false);
  });
});
