import type { Migration } from 'kysely';
import type { Dialect } from '../dialect.js';
import { foundation } from './0001-foundation.js';

/** Numbered, append-only, applied in order. Never edit a released migration: add the next one. */
export function migrations(dialect: Dialect): Record<string, Migration> {
  return {
    '0001-foundation': foundation(dialect),
  };
}
