/**
 * The database a process uses: a SQLite file (or :memory:) or a postgres:// URL with its optional
 * schema, as read from VALHALLA_DATABASE_URL.
 */
import { isAbsolute, resolve } from 'node:path';
import type { ConfigIssue } from './errors.js';
import { maskSecrets } from './mask.js';

export type DatabaseTarget =
  | { kind: 'sqlite'; path: string }
  | { kind: 'postgres'; url: string; schema?: string };

export function databaseTarget(url: string, cwd: string, issues: ConfigIssue[]): DatabaseTarget {
  if (/^postgres(ql)?:\/\//i.test(url)) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      issues.push({
        setting: 'VALHALLA_DATABASE_URL',
        value: maskSecrets(url),
        problem: 'not a valid postgres:// URL',
      });
      return { kind: 'postgres', url };
    }
    // `?schema=name` puts every table in that schema (created if missing) instead of public.
    const schema = parsed.searchParams.get('schema');
    if (schema === null) return { kind: 'postgres', url };
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
      issues.push({
        setting: 'VALHALLA_DATABASE_URL',
        value: maskSecrets(url),
        problem: 'schema= must be a lower-case SQL identifier',
      });
    }
    parsed.searchParams.delete('schema');
    return { kind: 'postgres', url: parsed.toString(), schema };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    issues.push({
      setting: 'VALHALLA_DATABASE_URL',
      value: maskSecrets(url),
      problem: 'must be a file path (SQLite) or a postgres:// URL',
    });
  }
  return { kind: 'sqlite', path: url === ':memory:' ? url : isAbsolute(url) ? url : resolve(cwd, url) };
}
