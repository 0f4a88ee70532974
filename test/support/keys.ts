import { createHash } from 'node:crypto';

/**
 * A stand-in identity key for tests that only need distinct keys: the first 32 hex digits (16 bytes)
 * of the SHA-256 of `name`, the shape the store takes keys in (`keyBytes`).
 */
export function testKey(name: string): string {
  return createHash('sha256').update(name).digest('hex').slice(0, 32);
}
