import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditLog } from '../audit/index.js';
import {
  CONFORMANCE_AUDIT_ACTION,
  CONFORMANCE_SCENARIOS,
  type ConformanceCheck,
  type ConformanceOptions,
  type ConformanceResult,
  type ConformanceScenarioName,
  type ConformanceScenarioResult,
  type ScenarioSetup,
} from './conformance-rig.js';
import { conformanceScenarios } from './conformance-scenarios.js';
import { conformanceProfileFor } from './private-install.js';

export {
  CONFORMANCE_AUDIT_ACTION,
  CONFORMANCE_SCENARIOS,
  type ConformanceCheck,
  type ConformanceOptions,
  type ConformanceResult,
  type ConformanceScenario,
  type ConformanceScenarioName,
  type ConformanceScenarioResult,
  type ScenarioSetup,
} from './conformance-rig.js';

import { profileIdentity } from '../config/index.js';

export { conformanceScenarios } from './conformance-scenarios.js';

/**
 * Run every scenario against the in-process sandbox partner playing the installation's configured
 * partner profile (or, for a profile of the operator's own, the shipped one of its auth family in its
 * stead: `conformanceProfileFor`), each from a fresh private database (the real app, engine and
 * partner client over HTTPS), and say which checks held. Nothing touches
 * the installation's database: record the result with `recordConformance`.
 */
export async function runConformance(options: ConformanceOptions): Promise<ConformanceResult> {
  const played = conformanceProfileFor(options.config);
  const { profile } = options.config.partner;
  const began = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-conformance-'));
  try {
    const setup: ScenarioSetup = { config: options.config, certDir: join(dir, 'cert') };
    const scenarios: ConformanceScenarioResult[] = [];
    for (const name of CONFORMANCE_SCENARIOS) scenarios.push(await runScenario(name, setup));
    return {
      passed: scenarios.every((s) => s.passed),
      startedAt: new Date(began).toISOString(),
      durationMs: Date.now() - began,
      partner: 'sandbox',
      profile: profileIdentity(profile),
      played: { profile: played.played, standIn: played.standIn },
      scenarios,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One scenario; one that throws is a failed scenario with the error as its check, never an exception. */
export async function runScenario(
  name: ConformanceScenarioName,
  setup: ScenarioSetup,
): Promise<ConformanceScenarioResult> {
  let checks: ConformanceCheck[];
  try {
    checks = await conformanceScenarios[name](setup);
  } catch (error) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    checks = [{ name: 'scenario ran to its end', ok: false, detail: message }];
  }
  return { name, passed: checks.length > 0 && checks.every((c) => c.ok), checks };
}

/** Append the result to the audit chain as `gates.conformance` (gate 2 and 3 evidence). */
export async function recordConformance(
  audit: AuditLog,
  result: ConformanceResult,
  actor: string,
): Promise<void> {
  await audit.record({ actor, action: CONFORMANCE_AUDIT_ACTION, details: { ...result } });
}
