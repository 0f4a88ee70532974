import type { Dialect } from './dialect.js';

/**
 * What differs between SQLite and PostgreSQL for the engine and the runners, named in one place so
 * that no domain code asks which database it runs on.
 */
export interface BackendRules {
  /**
   * Leads chosen before the claim's transaction may be claimed meanwhile through another connection
   * (PostgreSQL serves several at once; SQLite has one writer): choose them again inside it.
   */
  claimsMayRace: boolean;
  /**
   * Inside the claim's transaction, lock the chosen rows and pass over any another transaction holds
   * (`FOR UPDATE SKIP LOCKED`): never waited for, never claimed twice. SQLite has no row locks.
   */
  skipLockedClaims: boolean;
  /**
   * The database's clock is another host's (PostgreSQL): the lease and the caps' day follow it, so
   * this host's clock must agree with it. SQLite's is this host's own.
   */
  remoteClock: boolean;
}

export function backendRules(dialect: Dialect): BackendRules {
  switch (dialect) {
    case 'postgres':
      return { claimsMayRace: true, skipLockedClaims: true, remoteClock: true };
    case 'sqlite':
      return { claimsMayRace: false, skipLockedClaims: false, remoteClock: false };
    default:
      return dialect satisfies never;
  }
}
