/**
 * The Node.js versions the project names (package.json `engines`, and the README) are ones every
 * installed package supports: `npm ci` on any of them warns of no engine.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';

interface LockPackage {
  engines?: { node?: string } | string[];
  dev?: boolean;
}

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string };
};
const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, LockPackage>;
};

/** The first version of each range the project names (20.19.0, 22.13.0, 24.0.0 …). */
function namedMinimums(range: string): string[] {
  return range.split('||').map((part) => semver.minVersion(part.trim())!.version);
}

describe('the Node.js versions the project names', () => {
  const named = namedMinimums(pkg.engines.node);

  it('start no lower than the README says, and the lockfile records the same range', () => {
    expect(named[0]).toBe('20.19.0');
    expect((lock.packages[''] as { engines?: { node?: string } }).engines?.node).toBe(pkg.engines.node);
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    // As the README writes them: 20.19, 22.13, and 24 for 24.0.0.
    for (const version of named) {
      const [major, minor] = version.split('.');
      expect(readme).toContain(
        minor === '0' ? `or ${major} and newer` : `${major}.${minor} or newer on ${major}`,
      );
    }
  });

  it('are supported by every installed package (runtime and development)', () => {
    const refusing: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      const node = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      if (path === '' || node === undefined) continue;
      for (const version of named) {
        if (!semver.satisfies(version, node)) refusing.push(`${path} wants node ${node}, not ${version}`);
      }
    }
    expect(refusing).toEqual([]);
  });
});
