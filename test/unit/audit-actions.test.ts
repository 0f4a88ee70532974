import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EVIDENCE_ACTIONS, GATE_ACTIONS } from '../../src/gates/index.js';
import { AUDIT_ACTIONS, guardAction, isAuditAction, modeAction } from '../../src/policy/index.js';
import { REPO_ROOT } from '../support/cli.js';

const SRC = join(REPO_ROOT, 'src');
const ACTIONS_FILE = join(SRC, 'policy', 'audit-actions.ts');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const sources = sourceFiles(SRC).map((path) => ({
  file: relative(REPO_ROOT, path),
  path,
  text: readFileSync(path, 'utf8'),
}));

/** The names written as an `action:` property's value (`action: 'a.b'`, `action: x ? 'a.b' : 'c.d'`). */
function writtenActions(): { file: string; line: number; action: string }[] {
  const found: { file: string; line: number; action: string }[] = [];
  for (const { file, text } of sources) {
    text.split('\n').forEach((line, index) => {
      const value = /\baction: ([^,;})]*)/.exec(line)?.[1];
      if (value === undefined) return;
      // A literal, or the two branches of a conditional; identifiers and types are checked by tsc.
      const names =
        /^'([^']*)'\s*$/.exec(value)?.slice(1) ??
        /\?\s*'([^']*)'\s*:\s*'([^']*)'/.exec(value)?.slice(1) ??
        [];
      for (const action of names) found.push({ file, line: index + 1, action: action! });
    });
  }
  return found;
}

describe('audit actions', () => {
  it('every action written in src is in AUDIT_ACTIONS', () => {
    const written = writtenActions();
    // The scan finds the literal call sites (about fifty): an empty result would mean a broken scan.
    expect(written.length).toBeGreaterThan(40);
    expect(written.filter((w) => !isAuditAction(w.action))).toEqual([]);
  });

  it('no action is built from a template string outside the typed helpers', () => {
    const templated = sources.flatMap(({ file, text }) =>
      text
        .split('\n')
        .map((line, index) => ({ file, line: index + 1, text: line.trim() }))
        .filter((l) => /\baction: `/.test(l.text)),
    );
    expect(templated).toEqual([]);
  });

  it('lists each action once, each named area.name', () => {
    expect(new Set(AUDIT_ACTIONS).size).toBe(AUDIT_ACTIONS.length);
    for (const action of AUDIT_ACTIONS)
      expect(action).toMatch(/^[a-z0-9]+(_[a-z0-9]+)*\.[a-z0-9]+(_[a-z0-9]+)*$/);
  });

  it('lists no action that nothing writes or reads', () => {
    const elsewhere = sources
      .filter((s) => s.path !== ACTIONS_FILE)
      .map((s) => s.text)
      .join('\n');
    const computed = new Set<string>([
      ...(['pause', 'resume', 'rollback', 'rearm'] as const).map(modeAction),
      ...(['allowed', 'dry_run', 'refused'] as const).map(guardAction),
    ]);
    const unused = AUDIT_ACTIONS.filter(
      (action) => !computed.has(action) && !elsewhere.includes(`'${action}'`),
    );
    expect(unused).toEqual([]);
  });

  it('docs/audit.md names every action', () => {
    const page = readFileSync(join(REPO_ROOT, 'docs', 'audit.md'), 'utf8');
    expect(AUDIT_ACTIONS.filter((action) => !page.includes(`\`${action}\``))).toEqual([]);
  });

  it('the typed helpers name known actions', () => {
    expect(modeAction('rollback')).toBe('mode.rollback');
    expect(guardAction('dry_run')).toBe('guard.dry_run');
    expect(isAuditAction('mode.paused')).toBe(false);
  });

  it("the gates' evidence lists name only known actions", () => {
    const evidence = Object.values(EVIDENCE_ACTIONS);
    expect(evidence.filter((action) => !isAuditAction(action))).toEqual([]);
    expect(GATE_ACTIONS.filter((action) => !isAuditAction(action))).toEqual([]);
    // Every evidence entry also makes a cached gate answer stale.
    for (const action of evidence) expect(GATE_ACTIONS).toContain(action);
  });
});
