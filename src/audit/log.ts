import type { Writable } from 'node:stream';
import { type Kysely, sql, type Transaction } from 'kysely';
import type { Clock } from '../clock/index.js';
import { canonicalJson } from '../policy/index.js';
import type { Database, Store } from '../store/index.js';
import type { AuditAction } from './actions.js';
import { type AuditEntry, ChainVerifier, entryHash, GENESIS_HASH } from './chain.js';

/** What a caller records: no raw PII, ever: subjects are pseudonyms or ids. */
export interface AuditInput {
  actor: string;
  action: AuditAction;
  subject?: string | null;
  details?: Record<string, unknown>;
}

type Executor = Kysely<Database> | Transaction<Database>;

/**
 * An arbitrary constant: the PostgreSQL advisory lock that serialises appends across runners. Taken
 * with the schema's hash as its second key: installations in other schemas of the database do not wait on it.
 */
const AUDIT_LOCK_KEY = 0x7661_6c68;

export interface AuditLog {
  /**
   * Append inside the caller's transaction, so the entry commits with (and before) its effect.
   * On SQLite, append (or write) before the transaction's first read, so it holds the write lock.
   */
  append(trx: Transaction<Database>, entries: AuditInput | AuditInput[]): Promise<AuditEntry[]>;
  /** Append in a transaction of its own. */
  record(entries: AuditInput | AuditInput[]): Promise<AuditEntry[]>;
  verify(options?: { expectHead?: string }): Promise<AuditVerification>;
  /** The latest entry with this action (evidence lookups: the last drill, test alert, run), or undefined. */
  latest(action: AuditAction): Promise<AuditEntry | undefined>;
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
  async function append(trx: Transaction<Database>, input: AuditInput | AuditInput[]): Promise<AuditEntry[]> {
    const inputs = Array.isArray(input) ? input : [input];
    if (inputs.length === 0) return [];
    if (store.dialect === 'postgres')
      await sql`select pg_advisory_xact_lock(${AUDIT_LOCK_KEY}::int4, hashtext(current_schema()))`.execute(
        trx,
      );
    // SQLite: take the write lock before reading the head. A transaction that reads first fails at
    // once (SQLITE_BUSY_SNAPSHOT, no busy wait) when another process appended in between; a write
    // first waits its turn instead. The update touches no row, so the append-only trigger never fires.
    else await sql`update audit_log set seq = seq where 0`.execute(trx);
    const last = await trx
      .selectFrom('audit_log')
      .select(['seq', 'hash'])
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
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
    for (let i = 0; i < entries.length; i += 500) {
      await trx
        .insertInto('audit_log')
        .values(entries.slice(i, i + 500))
        .execute();
    }
    return entries;
  }

  async function* pages(db: Executor): AsyncGenerator<AuditEntry[]> {
    let after = 0;
    for (;;) {
      const rows = await db
        .selectFrom('audit_log')
        .selectAll()
        .where('seq', '>', after)
        .orderBy('seq')
        .limit(PAGE)
        .execute();
      if (rows.length === 0) return;
      yield rows;
      after = rows[rows.length - 1]!.seq;
    }
  }

  return {
    append,
    record: (input) => store.db.transaction().execute((trx) => append(trx, input)),
    latest: (action) =>
      store.db
        .selectFrom('audit_log')
        .selectAll()
        .where('action', '=', action)
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst(),
    async latestSeq(actions) {
      const row = await store.db
        .selectFrom('audit_log')
        .select((eb) => eb.fn.max('seq').as('seq'))
        .where('action', 'in', [...actions])
        .executeTakeFirst();
      return Number(row?.seq ?? 0);
    },
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
