import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig, PACKAGE_ROOT } from '../../src/config/index.js';
import { createMetrics } from '../../src/monitor/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

const DEPLOY = join(PACKAGE_ROOT, 'deploy');
const read = (path: string) => readFileSync(join(DEPLOY, path), 'utf8');

/** The valhalla_* metric names a PromQL expression refers to. */
function valhallaNames(expr: string): string[] {
  return [...expr.matchAll(/\bvalhalla_[a-zA-Z0-9_]+/g)].map((m) => m[0]);
}

/** Every series name the registry exposes (its text, as Prometheus reads it), with histogram parts. */
async function exposedNames(store: Store): Promise<Set<string>> {
  const config = loadConfig({ cwd: tempDir(), env: { VALHALLA_PHASE: '3' } });
  const metrics = createMetrics({ store, config, clock: new ManualClock('2026-11-20T12:00:00Z') });
  const names = new Set<string>();
  for (const [, name, type] of (await metrics.render()).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!);
    if (type === 'histogram') for (const part of ['_bucket', '_sum', '_count']) names.add(name + part);
    if (type === 'summary') for (const part of ['_sum', '_count']) names.add(name + part);
  }
  return names;
}

interface Rule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface Panel {
  title: string;
  type: string;
  targets?: { expr: string }[];
  panels?: Panel[];
  fieldConfig?: { defaults?: { thresholds?: { steps: { value: number | null }[] } } };
}

describe('deploy files', () => {
  let store: Store;
  let exposed: Set<string>;
  beforeAll(async () => {
    store = await openStore({ kind: 'sqlite', path: join(tempDir(), 'valhalla.db') });
    exposed = await exposedNames(store);
  });
  afterAll(async () => {
    await store?.close();
  });

  it('the registry lists the names the deploy files rely on (the check below is not vacuous)', () => {
    for (const name of [
      'valhalla_leads',
      'valhalla_requests_total',
      'valhalla_error_rate',
      'valhalla_mode',
      'valhalla_heartbeat_age_seconds',
      'valhalla_process_resident_memory_bytes',
    ]) {
      expect(exposed).toContain(name);
    }
    expect(exposed).not.toContain('valhalla_no_such_metric');
    expect(valhallaNames('valhalla_cap_usage{cap="day"} / valhalla_cap_limit{cap="day"} > 0.9')).toEqual([
      'valhalla_cap_usage',
      'valhalla_cap_limit',
    ]);
  });

  describe('Prometheus rules', () => {
    const document = parseYaml(read('prometheus/valhalla-rules.yml')) as {
      groups: { name: string; rules: Rule[] }[];
    };
    const rules = document.groups.flatMap((g) => g.rules);

    it('every valhalla_* metric in an expr is one the registry exposes', () => {
      const used = rules.flatMap((r) => valhallaNames(r.expr));
      expect(used.length).toBeGreaterThanOrEqual(8);
      for (const name of used) expect(exposed, `rules use ${name}`).toContain(name);
    });

    it('every rule is an alert with a severity and a summary', () => {
      expect(rules.length).toBeGreaterThanOrEqual(6);
      for (const rule of rules) {
        expect(rule.alert, rule.expr).toMatch(/^Valhalla[A-Za-z]+$/);
        expect(['critical', 'warning'], rule.alert).toContain(rule.labels?.severity);
        expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      }
      expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
    });

    it("covers the policy: error rate, rollback, heartbeat past the supervisor's limit, RSS before the restart line, daily cap > 90%, target down", () => {
      const exprs = rules.map((r) => r.expr.replace(/\s+/g, ' '));
      const has = (pattern: RegExp) =>
        expect(
          exprs.some((e) => pattern.test(e)),
          String(pattern),
        ).toBe(true);
      has(/valhalla_error_rate > valhalla_error_rate_tolerance/);
      has(/valhalla_error_rate_rollback == 1/);
      has(/valhalla_mode\{mode="rolled_back"\} == 1/);
      // The supervisor's own numbers (exposed as metrics), not copies of them: the heartbeat limit,
      // and a warning line below the RSS at which it restarts the worker.
      has(/valhalla_heartbeat_age_seconds > valhalla_heartbeat_limit_seconds/);
      has(/valhalla_worker_rss_bytes > 0\.[1-9] \* valhalla_worker_rss_restart_bytes/);
      has(/valhalla_cap_usage\{cap="day"\} \/ valhalla_cap_limit\{cap="day"\} > 0\.9/);
      has(/up\{job="valhalla"\} == 0/);
    });
  });

  describe('Grafana dashboard', () => {
    const dashboard = JSON.parse(read('grafana/valhalla-dashboard.json')) as { panels: Panel[]; uid: string };
    const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));

    it('every valhalla_* metric in an expr is one the registry exposes', () => {
      const used = exprs.flatMap(valhallaNames);
      expect(used.length).toBeGreaterThanOrEqual(15);
      for (const name of used) expect(exposed, `dashboard uses ${name}`).toContain(name);
    });

    it('shows lead flow, requests, error rate with the 10% line, mode, ramp, caps, heartbeat and RSS', () => {
      const uses = (name: string) =>
        panels.filter((p) => (p.targets ?? []).some((t) => valhallaNames(t.expr).includes(name)));
      for (const name of [
        'valhalla_leads',
        'valhalla_requests_total',
        'valhalla_mode',
        'valhalla_ramp_stage',
        'valhalla_cap_usage',
        'valhalla_cap_limit',
        'valhalla_heartbeat_age_seconds',
        'valhalla_heartbeat_limit_seconds',
        'valhalla_worker_rss_bytes',
        'valhalla_worker_rss_restart_bytes',
        'valhalla_memory_limit_bytes',
      ]) {
        expect(uses(name).length, name).toBeGreaterThan(0);
      }
      const errorRate = uses('valhalla_error_rate');
      expect(errorRate).toHaveLength(1);
      const steps = errorRate[0]!.fieldConfig?.defaults?.thresholds?.steps.map((s) => s.value);
      expect(steps).toContain(0.1);
      expect(
        errorRate[0]!.targets!.some((t) => valhallaNames(t.expr).includes('valhalla_error_rate_tolerance')),
      ).toBe(true);
      for (const cap of ['cycle', 'day', 'budget']) {
        expect(
          panels.some(
            (p) => p.type === 'gauge' && (p.targets ?? []).some((t) => t.expr.includes(`cap="${cap}"`)),
          ),
          cap,
        ).toBe(true);
      }
    });
  });

  describe('systemd unit', () => {
    const unit = read('systemd/valhalla.service');
    /** The values of a directive, in order (a unit may repeat one). */
    const directive = (name: string) =>
      unit
        .split('\n')
        .filter((line) => line.startsWith(`${name}=`))
        .map((line) => line.slice(name.length + 1).trim());

    it('caps the whole service at 512 MB and always restarts it', () => {
      expect(directive('MemoryMax')).toEqual(['512M']);
      expect(directive('Restart')).toEqual(['always']);
      // A refusal by policy (exit 3) is not restarted into the same refusal.
      expect(directive('RestartPreventExitStatus')).toEqual(['2 3']);
    });

    it('runs `valhalla run` as a dedicated user, hardened, with only the data folder writable', () => {
      expect(directive('ExecStart')).toHaveLength(1);
      expect(directive('ExecStart')[0]).toMatch(/\bvalhalla(\.js)? run$/);
      expect(directive('User')).toEqual(['valhalla']);
      expect(directive('NoNewPrivileges')).toEqual(['yes']);
      expect(directive('ProtectSystem')).toEqual(['strict']);
      expect(directive('EnvironmentFile')).toHaveLength(1);
      const dataDir = directive('Environment')
        .map((e) => /^VALHALLA_DATA_DIR=(.+)$/.exec(e)?.[1])
        .find((v) => v !== undefined);
      expect(dataDir).toBe('/var/lib/valhalla');
      expect(directive('ReadWritePaths')).toContain(dataDir);
      expect(directive('StateDirectory')).toEqual(['valhalla']);
    });
  });

  describe('Dockerfile', () => {
    const dockerfile = read('Dockerfile');
    const instructions = dockerfile
      .replace(/\\\n/g, ' ')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    const stages = instructions.filter((l) => /^FROM /i.test(l));
    const finalStage = instructions.slice(instructions.lastIndexOf(stages.at(-1)!));

    it('every stage starts from a Node 20 image', () => {
      expect(stages.length).toBeGreaterThan(0);
      for (const from of stages) expect(from).toMatch(/^FROM node:20-bookworm-slim( AS \w+)?$/);
    });

    it('builds better-sqlite3 from source, then builds and prunes dev dependencies', () => {
      const run = instructions.filter((l) => l.startsWith('RUN ')).join('\n');
      for (const tool of ['python3', 'make', 'g++']) expect(run).toContain(` ${tool}`);
      expect(dockerfile).toMatch(/npm_config_build_from_source=true/);
      expect(run).toContain('npm ci');
      expect(run).toMatch(/npm run build && npm prune --omit=dev/);
    });

    it('runs as a non-root user, with the data folder as a volume, CMD valhalla run', () => {
      const users = finalStage.filter((l) => l.startsWith('USER '));
      expect(users.length).toBeGreaterThan(0);
      const user = users.at(-1)!.slice('USER '.length).split(':')[0]!;
      expect(['root', '0']).not.toContain(user);
      expect(finalStage.indexOf(users.at(-1)!)).toBeLessThan(
        finalStage.findIndex((l) => l.startsWith('CMD ')),
      );
      expect(finalStage).toContain('VOLUME ["/var/lib/valhalla"]');
      expect(finalStage.at(-1)).toBe('CMD ["node","bin/valhalla.js","run"]');
    });

    it('copies what `npm run build` compiles (tsconfig.build.json, the dashboard, the configurations it names), and no test or benchmark code', () => {
      const copied = instructions
        .filter((l) => l.startsWith('COPY ') && !l.includes('--from='))
        .flatMap((l) => l.split(/\s+/).slice(1, -1));
      const build = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'tsconfig.build.json'), 'utf8')) as {
        include: string[];
      };
      for (const folder of build.include) expect(copied, folder).toContain(folder);
      const scripts = (
        JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
          scripts: Record<string, string>;
        }
      ).scripts;
      if (scripts.build!.includes('web/')) expect(copied).toContain('web');
      // Every configuration the build names (the dashboard's, the CLI bundle's) is in the image's build.
      for (const [, config] of scripts.build!.matchAll(/--config (\S+)/g)) {
        const top = config!.split('/')[0]!;
        expect(copied, config).toContain(top);
      }
      expect(copied.filter((c) => c.startsWith('test') || c.startsWith('bench'))).toEqual([]);
    });

    it('copies only paths that exist in the repository', () => {
      const copies = instructions.filter((l) => l.startsWith('COPY ') && !l.includes('--from='));
      expect(copies.length).toBeGreaterThan(3);
      for (const copy of copies) {
        const sources = copy.split(/\s+/).slice(1, -1);
        for (const source of sources) expect(existsSync(join(PACKAGE_ROOT, source)), source).toBe(true);
      }
    });
  });
});
