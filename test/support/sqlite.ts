import SqliteDatabase from 'better-sqlite3';

/** Read a SQLite database directly (read-only): what the commands did, not what they say they did. */
export function query<T>(dbFile: string, sql: string, ...params: unknown[]): T[] {
  const db = new SqliteDatabase(dbFile, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}
