import { describe, expect, it } from 'vitest';
import { createSessions, createTokenBook, roleAtLeast, sameSecret } from '../../src/server/auth.js';
import { createApiToken } from '../../src/server/index.js';

describe('API tokens', () => {
  it('a created token is 256 random bits; its entry holds only its SHA-256', () => {
    const a = createApiToken('alice', 'operator');
    const b = createApiToken('alice', 'operator');
    expect(a.token).toMatch(/^vh_[A-Za-z0-9_-]{43}$/);
    expect(a.token).not.toBe(b.token);
    expect(a.entry).toMatch(/^alice:operator:[0-9a-f]{64}$/);
    expect(a.entry).not.toContain(a.token.slice(3));
  });

  it('the book finds the holder of a token, and nobody for any other string', () => {
    const alice = createApiToken('alice', 'operator');
    const bob = createApiToken('bob', 'viewer');
    const entry = (e: string) => {
      const [name, role, sha256] = e.split(':');
      return { name: name!, role: role as 'viewer' | 'operator' | 'admin', sha256: sha256! };
    };
    const book = createTokenBook([entry(alice.entry), entry(bob.entry)]);
    expect(book.lookup(alice.token)?.name).toBe('alice');
    expect(book.lookup(bob.token)?.role).toBe('viewer');
    expect(book.lookup(`${alice.token}x`)).toBeNull();
    expect(book.lookup(alice.entry.split(':')[2]!)).toBeNull();
    expect(book.lookup('')).toBeNull();
    expect(createTokenBook([]).lookup(alice.token)).toBeNull();
  });

  it('roles are ordered viewer < operator < admin', () => {
    expect(roleAtLeast('admin', 'operator')).toBe(true);
    expect(roleAtLeast('operator', 'operator')).toBe(true);
    expect(roleAtLeast('viewer', 'operator')).toBe(false);
    expect(roleAtLeast('operator', 'admin')).toBe(false);
  });

  it('sameSecret compares whole strings only', () => {
    expect(sameSecret('abc', 'abc')).toBe(true);
    expect(sameSecret('abc', 'abd')).toBe(false);
    expect(sameSecret('abc', 'abcd')).toBe(false);
  });
});

describe('dashboard sessions', () => {
  const entry = { name: 'alice', role: 'operator' as const, sha256: 'a'.repeat(64) };

  it('expire after their time to live (injected clock)', () => {
    let now = 1_000;
    const sessions = createSessions({ ttlMs: 60_000, max: 10, now: () => now });
    const { id, session } = sessions.create(entry);
    expect(session.csrfToken).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(sessions.get(id)?.name).toBe('alice');
    now += 59_999;
    expect(sessions.get(id)).not.toBeNull();
    now += 1;
    expect(sessions.get(id)).toBeNull();
  });

  it('are bounded: the oldest goes first; sign-out removes one; unknown ids are nobody', () => {
    const sessions = createSessions({ ttlMs: 60_000, max: 2, now: () => 0 });
    const first = sessions.create(entry).id;
    const second = sessions.create(entry).id;
    const third = sessions.create(entry).id;
    expect(sessions.get(first)).toBeNull();
    expect(sessions.get(second)).not.toBeNull();
    sessions.delete(second);
    expect(sessions.get(second)).toBeNull();
    expect(sessions.get(third)).not.toBeNull();
    expect(sessions.get(undefined)).toBeNull();
    expect(sessions.get('nope')).toBeNull();
  });
});
