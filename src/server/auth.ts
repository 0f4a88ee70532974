import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ApiRole, ApiTokenEntry } from '../config/index.js';

/** Who a request is: the token's holder and role, and how they proved it. */
export interface Principal {
  name: string;
  role: ApiRole;
  via: 'bearer' | 'session';
  /** The session's anti-forgery token (cookie sign-ins only). */
  csrfToken: string | null;
}

const ROLE_RANK: Record<ApiRole, number> = { viewer: 0, operator: 1, admin: 2 };

export function roleAtLeast(role: ApiRole, needed: ApiRole): boolean {
  return ROLE_RANK[role] >= ROLE_RANK[needed];
}

/** A fresh API token: 32 random bytes, and the entry for VALHALLA_API_TOKENS (its hash only). */
export function createApiToken(name: string, role: ApiRole): { token: string; entry: string } {
  const token = `vh_${randomBytes(32).toString('base64url')}`;
  return { token, entry: `${name}:${role}:${sha256Hex(token)}` };
}

/**
 * The configured tokens. A plain SHA-256 is enough here (no salt, no slow hash): the tokens are 256
 * random bits made by `createApiToken`, not passwords a person chose, so there is nothing to guess.
 */
export function createTokenBook(entries: readonly ApiTokenEntry[]) {
  const hashes = entries.map((e) => ({ entry: e, hash: Buffer.from(e.sha256, 'hex') }));
  return {
    /** The entry this token belongs to, or null. Every entry is compared, in constant time each. */
    lookup(token: string): ApiTokenEntry | null {
      const presented = createHash('sha256').update(token, 'utf8').digest();
      let found: ApiTokenEntry | null = null;
      for (const { entry, hash } of hashes) {
        if (timingSafeEqual(presented, hash)) found = entry;
      }
      return found;
    },
    get size() {
      return hashes.length;
    },
  };
}

interface Session {
  name: string;
  role: ApiRole;
  csrfToken: string;
  expiresAt: number;
}

/**
 * Dashboard sign-ins, kept in this process only: a restart signs everyone out, and nothing about a
 * session is ever written to disk. Bounded: the oldest session goes when the table is full.
 */
export function createSessions(options: { ttlMs: number; max: number; now: () => number }) {
  const sessions = new Map<string, Session>();
  return {
    create(entry: ApiTokenEntry): { id: string; session: Session } {
      while (sessions.size >= options.max) {
        const oldest = sessions.keys().next().value;
        if (oldest === undefined) break;
        sessions.delete(oldest);
      }
      const id = randomBytes(32).toString('base64url');
      const session = {
        name: entry.name,
        role: entry.role,
        csrfToken: randomBytes(24).toString('base64url'),
        expiresAt: options.now() + options.ttlMs,
      };
      sessions.set(id, session);
      return { id, session };
    },
    get(id: string | undefined): Session | null {
      if (id === undefined) return null;
      const session = sessions.get(id);
      if (!session) return null;
      if (session.expiresAt <= options.now()) {
        sessions.delete(id);
        return null;
      }
      return session;
    },
    delete(id: string | undefined): void {
      if (id !== undefined) sessions.delete(id);
    },
  };
}

export function sameSecret(a: string, b: string): boolean {
  const [x, y] = [Buffer.from(a), Buffer.from(b)];
  return x.length === y.length && timingSafeEqual(x, y);
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * How many failed authentications (a wrong token at sign-in, a wrong bearer token on the API) are
 * allowed in a window, from one address and from all addresses together. A token is 256 random bits
 * and cannot be guessed; the limits stop a flood, and one spread over many addresses (127.0.0.2, .3, …
 * are all this host's) by the global count. Only failures count: a signed-in dashboard or a script
 * with a good token is never slowed by its own traffic.
 */
export const AUTH_FAILURE_LIMITS = { perAddress: 10, global: 20, windowMs: 60_000 } as const;

export interface FailureLimiter {
  /** Milliseconds until an attempt from this address may be judged again; 0 when it may be now. */
  blockedFor(address: string): number;
  recordFailure(address: string): void;
}

/**
 * A sliding log of failures per address and overall. Bounded: once the global log is full nothing
 * more is recorded (every attempt is refused unjudged), so it holds at most `global` entries.
 */
export function createFailureLimiter(
  limits: { perAddress: number; global: number; windowMs: number },
  now: () => number,
): FailureLimiter {
  let all: number[] = [];
  const byAddress = new Map<string, number[]>();
  const prune = () => {
    const since = now() - limits.windowMs;
    all = all.filter((t) => t > since);
    for (const [address, times] of byAddress) {
      const kept = times.filter((t) => t > since);
      if (kept.length === 0) byAddress.delete(address);
      else byAddress.set(address, kept);
    }
  };
  const waitFor = (times: readonly number[], max: number) =>
    times.length < max ? 0 : Math.max(1, times[times.length - max]! + limits.windowMs - now());
  return {
    blockedFor(address) {
      prune();
      return Math.max(waitFor(all, limits.global), waitFor(byAddress.get(address) ?? [], limits.perAddress));
    },
    recordFailure(address) {
      prune();
      if (all.length >= limits.global) return;
      const at = now();
      all.push(at);
      byAddress.set(address, [...(byAddress.get(address) ?? []), at]);
    },
  };
}
