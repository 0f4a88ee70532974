import type { Writable } from 'node:stream';
import type { Clock } from '../clock/index.js';
import type { AuditAction } from '../policy/index.js';
import { canonicalJson } from '../policy/index.js';
import type { Executor, StoreTransaction } from '../store/index.js';
import {
  auditAfter,
  auditHead,
  insertAuditEntries,
  latestAuditEntryOf,
  latestAuditSeqOf,
  lockAuditChain,
  recentAuditEntriesOf,
  type Store,
} from '../store/index.js';
import { type AuditEntry, ChainVerifier, entryHash, GENESIS_HASH } from './chain.js';

/** What a caller records: no raw PII, ever: subjects are pseudonyms or ids. */
export interface AuditInput {
  actor: string;
  action: AuditAction;
  subject?: string | null;
  details?: Record<string, unknown>;
}

export interface AuditLog {
  /**
   * Append inside the caller's transaction, so the entry commits with (and before) its effect.
   * On SQLite, append (or write) before the transaction's first read, so it holds the write lock.
   */
  append(trx: StoreTransaction, entries: AuditInput | AuditInput[]): Promise<AuditEntry[]>;
  /** Append in a transaction of its own. */
  record(entries: AuditInput | AuditInput[]): Promise<AuditEntry[]>;
  verify(options?: { expectHead?: string }): Promise<AuditVerification>;
  /** The latest entry with this action (evidence lookups: the last drill, test alert, run), or undefined. */
  latest(action: AuditAction): Promise<AuditEntry | undefined>;
  /** The newest `limit` entries with this action, newest first (evidence that must match something). */
  recent(action: AuditAction, limit: number): Promise<AuditEntry[]>;
  /** The highest sequence number among entries with these actions (0: none). */
  latestSeq(actions: readonly AuditAction[]): Promise<number>;
  /** Write every entry as one JSON line, in sequence order. */
  export(out: Writable): Promise<{ entries: number; headHash: string }>;
}

export interface AuditVerification {
  ok: boolean;
  entries: number;
  headHash: string;
  firstBreak: ReturnType<ChainVerifier['result']>['firstBreak'];
  /** Set when `expectHead` was given and the chain's head is not that hash (entries cut off the end). */
  headMismatch: { expected: string; actual: string } | null;
}

const PAGE = 5_000;

export function createAuditLog(store: Store, clock: Clock): AuditLog {
  async function append(trx: StoreTransaction, input: AuditInput | AuditInput[]): Promise<AuditEntry[]> {
    const inputs = Array.isArray(input) ? input : [input];
    if (inputs.length === 0) return [];
    // Locked before the head is read: concurrent appends (other runners too) link one after another.
    await lockAuditChain(trx, store.dialect);
    const last = await auditHead(trx);
    let seq = last?.seq ?? 0;
    let prevHash = last?.hash ?? GENESIS_HASH;
    const at = clock.now();
    const entries: AuditEntry[] = inputs.map((item) => {
      seq += 1;
      const body = {
        seq,
        at,
        actor: item.actor,
        action: item.action,
        subject: item.subject ?? null,
        details: canonicalJson(item.details ?? {}),
        prev_hash: prevHash,
      };
      const entry = { ...body, hash: entryHash(body) };
      prevHash = entry.hash;
      return entry;
    });
    await insertAuditEntries(trx, entries);
    return entries;
  }

  async function* pages(db: Executor): AsyncGenerator<AuditEntry[]> {
    let after = 0;
    for (;;) {
      const rows = await auditAfter(db, after, PAGE);
      if (rows.length === 0) return;
      yield rows;
      after = rows[rows.length - 1]!.seq;
    }
  }

  return {
    append,
    record: (input) => store.db.transaction().execute((trx) => append(trx, input)),
    latest: (action) => latestAuditEntryOf(store.db, action),
    recent: (action, limit) => recentAuditEntriesOf(store.db, action, limit),
    latestSeq: (actions) => latestAuditSeqOf(store.db, actions),
    async verify(options = {}) {
      const verifier = new ChainVerifier();
      outer: for await (const rows of pages(store.db)) {
        for (const row of rows) if (!verifier.push(row)) break outer;
      }
      const result = verifier.result();
      const headMismatch =
        result.ok && options.expectHead !== undefined && options.expectHead !== result.headHash
          ? { expected: options.expectHead, actual: result.headHash }
          : null;
      return { ...result, ok: result.ok && headMismatch === null, headMismatch };
    },
    async export(out) {
      let entries = 0;
      let headHash = GENESIS_HASH;
      for await (const rows of pages(store.db)) {
        const text = rows.map((row) => `${JSON.stringify(row)}\n`).join('');
        if (!out.write(text)) await new Promise((resolve) => out.once('drain', resolve));
        entries += rows.length;
        headHash = rows[rows.length - 1]!.hash;
      }
      return { entries, headHash };
    },
  };
}
