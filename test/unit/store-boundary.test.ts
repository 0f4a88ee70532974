import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';

/** Every folder of src but the store: every query, pragma and dialect difference is in src/store. */
const CLEAN = readdirSync(join(REPO_ROOT, 'src'), { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && entry.name !== 'store')
  .map((entry) => entry.name);

/** A query built or written here, the raw SQLite handle used, or a branch on the database's dialect. */
const SQL = /\b(selectFrom|insertInto|updateTable|deleteFrom)\(|\bsql`|\.sqlite\??\.|\bdialect [!=]== /;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('the store boundary', () => {
  it.each(CLEAN)('src/%s holds no SQL and no dialect branch', (folder) => {
    const offending = sourceFiles(join(REPO_ROOT, 'src', folder)).flatMap((path) =>
      readFileSync(path, 'utf8')
        .split('\n')
        .flatMap((line, index) =>
          SQL.test(line) ? [`${relative(REPO_ROOT, path)}:${index + 1}: ${line.trim()}`] : [],
        ),
    );
    expect(offending).toEqual([]);
  });
});
