import type { ColumnDefinitionBuilder } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * The column types the migrations share: an auto-incrementing key and 64-bit integers (epoch ms,
 * counts) on both backends. Released migrations keep their own copies: a migration never changes.
 */
export function columnTypes(dialect: Dialect) {
  return {
    pk: dialect === 'postgres' ? 'bigserial' : 'integer',
    big: dialect === 'postgres' ? 'bigint' : 'integer',
    id: (c: ColumnDefinitionBuilder) =>
      dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey(),
  } as const;
}
