// Bulk writes off the service's event loop (the admin API's uploads): commits without an fsync each,
// then one sync of the write-ahead log before the caller is answered. SQLite only; PostgreSQL's
// commits are unchanged.
import { closeSync, fsyncSync, openSync } from 'node:fs';
import type { Store } from './executor.js';
import type { StoreTarget } from './open.js';

/**
 * SQLite: this connection's commits no longer wait for a disk flush each (synchronous=NORMAL: the
 * write-ahead log stays consistent after a power cut, only its newest commits can be lost until
 * `syncCommits` or the next commit with a flush), until the returned function puts the old setting
 * back. Synced at every commit, each transaction held the one write lock through a flush. The setting
 * is the connection's: for a connection nothing else commits through while it lasts.
 */
export function deferCommitSync(store: Store): () => void {
  return setUntilRestored(store, 'synchronous', 'NORMAL');
}

/** SQLite: set a pragma on this connection until the returned function puts its old value back. */
function setUntilRestored(store: Store, pragma: string, value: string | number): () => void {
  const raw = store.sqlite;
  if (raw === null) return () => undefined;
  const before = raw.pragma(pragma, { simple: true }) as number;
  raw.pragma(`${pragma} = ${value}`);
  return () => {
    raw.pragma(`${pragma} = ${before}`);
  };
}

/**
 * Make every commit since `deferCommitSync` durable: the write-ahead log holds them in order, so one
 * fsync of it covers them all. Any later commit with synchronous=FULL (the worker's) syncs them too.
 */
export function syncCommits(target: StoreTarget): void {
  if (target.kind !== 'sqlite' || target.path === ':memory:') return;
  let fd: number | null = null;
  try {
    fd = openSync(`${target.path}-wal`, 'r+');
    fsyncSync(fd);
  } catch (error) {
    // No log file (checkpointed and removed): nothing is waiting in it.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

/**
 * SQLite: a larger page cache on this connection for a bulk write, until the returned function puts the
 * old size back. A chunk's leads land on random pages of the identity keys' unique indexes; with the
 * default 2 MB cache those pages are read and spilled again and again within one transaction.
 */
export function widenPageCache(store: Store, mebibytes: number): () => void {
  return setUntilRestored(store, 'cache_size', -Math.round(mebibytes * 1024));
}

/**
 * SQLite: fold the write-ahead log into the database every `pages` pages on this connection (1,000 by
 * default) until the returned function folds what is left, without waiting for anyone, and puts the old
 * interval back. A bulk write re-dirties the same random index pages transaction after transaction: a
 * longer log copies each into the database once per fold, not once per transaction. The fold never
 * holds the write lock (another process's pause or rollback commits meanwhile); the log file grows to
 * about `pages` × 4 KiB on disk while it runs.
 */
export function foldLogLess(store: Store, pages: number): () => void {
  const raw = store.sqlite;
  if (raw === null) return () => undefined;
  const before = raw.pragma('wal_autocheckpoint', { simple: true }) as number;
  raw.pragma(`wal_autocheckpoint = ${pages}`);
  return () => {
    try {
      // Best effort: a fold that cannot run now is done by the next commit's automatic one.
      raw.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // The connection failed with the write it served; the error that matters is that one.
    }
    raw.pragma(`wal_autocheckpoint = ${before}`);
  };
}

/**
 * SQLite: keep this connection's statement journals in memory until the returned function puts the
 * default (files) back. A statement that can fail halfway (an ingest's insert fires triggers, checks
 * foreign keys and writes two tables) journals the pages it changes; SQLite spills such journals to
 * unnamed files in /var/tmp: copies of lead rows (a person's data) outside the database, and most of an
 * ingest's writes (18,000 a transaction of 1,000 leads). An ingest's statements each change a few pages,
 * so in memory they stay small. Not for every connection: one statement over a million rows (expiring
 * stale leads, dropping a table with secure_delete) would journal hundreds of megabytes in memory.
 */
export function journalInMemory(store: Store): () => void {
  return setUntilRestored(store, 'temp_store', 'MEMORY');
}
