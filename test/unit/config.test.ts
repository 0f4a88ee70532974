import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type Config,
  ConfigError,
  type ConfigIssue,
  DEFAULT_POLICY_FILE,
  describeConfig,
  isConfigError,
  loadConfig,
  loadPolicyFile,
  maskSecrets,
  type PolicyDocument,
  policyHash,
} from '../../src/config/index.js';
import { tempDir } from '../support/tmp.js';

type Env = Record<string, string | undefined>;

const SECRET = 'unit-test-secret-0123456789abcdef0123456789';
const PARTNER: Env = {
  VALHALLA_PARTNER_URL: 'https://partner.example.test',
  VALHALLA_PARTNER_TOKEN_URL: 'https://partner.example.test/oauth/token',
  VALHALLA_PARTNER_CLIENT_ID: 'valhalla',
  VALHALLA_PARTNER_CLIENT_SECRET: 'partner-client-secret-value',
};
const LIVE: Env = {
  VALHALLA_PHASE: '4',
  VALHALLA_REAL_DATA_INGEST: '1',
  VALHALLA_DRY_RUN: '0',
  VALHALLA_DISABLE_OUTBOUND: '0',
  ...PARTNER,
};
const SHIPPED_POLICY = JSON.parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8')) as Record<string, unknown>;

/** A working folder of its own: no stray .env, no secret file, unless the test writes one. */
function load(env: Env, cwd = tempDir()): Config {
  return loadConfig({ env, cwd });
}

/** Load and expect a refusal; returns the error (never a Config: a refused value is not clamped). */
function refuse(env: Env, cwd = tempDir()): ConfigError {
  let config: Config | undefined;
  try {
    config = loadConfig({ env, cwd });
  } catch (error) {
    expect(isConfigError(error)).toBe(true);
    return error as ConfigError;
  }
  throw new Error(`expected a refusal, got a Config with limits ${JSON.stringify(config.limits)}`);
}

function issueFor(error: ConfigError, setting: string): ConfigIssue {
  const issue = error.issues.find((i) => i.setting === setting);
  if (!issue) throw new Error(`no issue for ${setting}; issues: ${JSON.stringify(error.issues)}`);
  return issue;
}

/** A copy of the shipped policy file, changed by `edit`, written to a temp folder. */
function policyFile(edit: (policy: Record<string, unknown>) => void): string {
  const policy = structuredClone(SHIPPED_POLICY);
  edit(policy);
  const file = join(tempDir(), 'policy.json');
  writeFileSync(file, JSON.stringify(policy, null, 2));
  return file;
}

describe('loadConfig: environment limits above a hard maximum are refused, never clamped', () => {
  it.each([
    ['VALHALLA_MAX_LEADS_PER_CYCLE', '101', '100'],
    ['VALHALLA_MAX_LEADS_PER_CYCLE', '150', '100'],
    ['VALHALLA_MAX_ACTIONS_PER_CYCLE', '11', '10'],
    ['VALHALLA_MAX_ACTIONS_PER_CYCLE', '50', '10'],
    ['VALHALLA_RATE_LIMIT', '6', '5'],
    ['VALHALLA_RATE_LIMIT', '5.5', '5'],
  ])('%s=%s is refused naming the variable, the value and the limit %s', (name, value, limit) => {
    const error = refuse({ ...LIVE, [name]: value });
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.issues).toHaveLength(1);
    const issue = issueFor(error, name);
    expect(issue.value).toBe(value);
    expect(issue.problem).toContain(`hard maximum ${limit}`);
    expect(issue.problem).toContain('not clamped');
    // The message an operator reads carries all three too.
    expect(error.message).toContain(`${name}="${value}"`);
    expect(error.message).toContain(limit);
  });

  it.each([
    ['VALHALLA_MAX_LEADS_PER_CYCLE', '100', 'leadsPerCycle', 100],
    ['VALHALLA_MAX_ACTIONS_PER_CYCLE', '10', 'actionsPerCycle', 10],
    ['VALHALLA_RATE_LIMIT', '5', 'rateLimitPerSecond', 5],
    ['VALHALLA_RATE_LIMIT', '2.5', 'rateLimitPerSecond', 2.5],
  ] as const)('%s=%s (at or under the hard maximum) is accepted as given', (name, value, limit, expected) => {
    const config = load({ ...LIVE, [name]: value });
    expect(config.limits[limit]).toBe(expected);
    expect(config.sources[name]).toBe('environment');
  });

  it('reports every problem at once', () => {
    const error = refuse({
      ...LIVE,
      VALHALLA_MAX_LEADS_PER_CYCLE: '101',
      VALHALLA_MAX_ACTIONS_PER_CYCLE: '11',
      VALHALLA_RATE_LIMIT: '6',
    });
    expect(error.issues.map((i) => i.setting).sort()).toEqual([
      'VALHALLA_MAX_ACTIONS_PER_CYCLE',
      'VALHALLA_MAX_LEADS_PER_CYCLE',
      'VALHALLA_RATE_LIMIT',
    ]);
  });
});

describe('loadConfig: values that are not numbers are refused', () => {
  it.each([
    ['VALHALLA_MAX_LEADS_PER_CYCLE', 'abc', '1 to 100'],
    ['VALHALLA_MAX_LEADS_PER_CYCLE', '25.5', '1 to 100'],
    ['VALHALLA_MAX_LEADS_PER_CYCLE', '', '1 to 100'],
    ['VALHALLA_MAX_LEADS_PER_CYCLE', '-1', '1 to 100'],
    ['VALHALLA_MAX_LEADS_PER_CYCLE', '1e2', '1 to 100'],
    ['VALHALLA_MAX_ACTIONS_PER_CYCLE', 'abc', '0 to 10'],
    ['VALHALLA_MAX_ACTIONS_PER_CYCLE', '2.5', '0 to 10'],
    ['VALHALLA_MAX_ACTIONS_PER_CYCLE', '', '0 to 10'],
    ['VALHALLA_MAX_ACTIONS_PER_CYCLE', '-1', '0 to 10'],
    ['VALHALLA_RATE_LIMIT', 'abc', 'at most 5'],
    ['VALHALLA_RATE_LIMIT', '', 'at most 5'],
    ['VALHALLA_RATE_LIMIT', '-1', 'at most 5'],
  ])('%s=%j is refused with the allowed range', (name, value, range) => {
    const issue = issueFor(refuse({ ...LIVE, [name]: value }), name);
    expect(issue.value).toBe(value);
    expect(issue.problem).toMatch(/not a (whole )?number/);
    expect(issue.problem).toContain(range);
  });

  it('refuses 0 leads per cycle and a rate limit of 0 (below the minimum)', () => {
    expect(
      issueFor(refuse({ VALHALLA_MAX_LEADS_PER_CYCLE: '0' }), 'VALHALLA_MAX_LEADS_PER_CYCLE').problem,
    ).toContain('minimum 1');
    expect(issueFor(refuse({ VALHALLA_RATE_LIMIT: '0' }), 'VALHALLA_RATE_LIMIT').problem).toContain(
      'above 0',
    );
  });

  it('refuses an empty limit in the .env file too, instead of falling back to the default', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, '.env'), 'VALHALLA_MAX_LEADS_PER_CYCLE=\n');
    const issue = issueFor(refuse({}, cwd), 'VALHALLA_MAX_LEADS_PER_CYCLE');
    expect(issue.value).toBe('');
  });
});

describe('loadConfig: phase and switches', () => {
  it.each(['5', '2', '0', 'four', ''])('VALHALLA_PHASE=%j is refused', (value) => {
    const issue = issueFor(refuse({ VALHALLA_PHASE: value }), 'VALHALLA_PHASE');
    expect(issue.value).toBe(value);
    expect(issue.problem).toContain('must be 3 (DRY-RUN) or 4 (LIVE)');
  });

  it.each([
    ['VALHALLA_DRY_RUN', 'yes'],
    ['VALHALLA_DRY_RUN', 'true'],
    ['VALHALLA_DISABLE_OUTBOUND', '2'],
    ['VALHALLA_REAL_DATA_INGEST', 'on'],
    ['VALHALLA_REAL_DATA_INGEST', ''],
  ])('%s=%j (not 0 or 1) is refused', (name, value) => {
    const issue = issueFor(refuse({ [name]: value }), name);
    expect(issue.value).toBe(value);
    expect(issue.problem).toBe(`${name} must be 0 or 1`);
  });

  it('refuses Phase 3 with DRY_RUN=0', () => {
    const error = refuse({ VALHALLA_PHASE: '3', VALHALLA_DRY_RUN: '0' });
    expect(error.issues).toHaveLength(1);
    const issue = issueFor(error, 'VALHALLA_DRY_RUN');
    expect(issue.value).toBe('0');
    expect(issue.problem).toContain('Phase 3 requires VALHALLA_DRY_RUN=1');
  });

  it('refuses Phase 3 with DISABLE_OUTBOUND=0', () => {
    const error = refuse({ VALHALLA_DISABLE_OUTBOUND: '0' });
    expect(error.issues).toHaveLength(1);
    const issue = issueFor(error, 'VALHALLA_DISABLE_OUTBOUND');
    expect(issue.value).toBe('0');
    expect(issue.problem).toContain('Phase 3 requires VALHALLA_DISABLE_OUTBOUND=1');
  });

  it.each([
    ['VALHALLA_DRY_RUN', '1', 'Phase 4 requires VALHALLA_DRY_RUN=0'],
    ['VALHALLA_DISABLE_OUTBOUND', '1', 'Phase 4 requires VALHALLA_DISABLE_OUTBOUND=0'],
    ['VALHALLA_REAL_DATA_INGEST', '0', 'Phase 4 requires VALHALLA_REAL_DATA_INGEST=1'],
  ])('refuses Phase 4 with %s=%s', (name, value, problem) => {
    const error = refuse({ ...LIVE, [name]: value });
    expect(error.issues).toHaveLength(1);
    const issue = issueFor(error, name);
    expect(issue.value).toBe(value);
    expect(issue.problem).toContain(problem);
  });

  it('refuses Phase 4 left on the safe defaults, naming each switch and that it was a default', () => {
    const error = refuse({ VALHALLA_PHASE: '4', ...PARTNER });
    expect(error.issues.map((i) => [i.setting, i.value])).toEqual([
      ['VALHALLA_DRY_RUN', '1 (default)'],
      ['VALHALLA_DISABLE_OUTBOUND', '1 (default)'],
      ['VALHALLA_REAL_DATA_INGEST', '0 (default)'],
    ]);
  });

  it('refuses Phase 4 when only one switch is left on its default', () => {
    const error = refuse({
      VALHALLA_PHASE: '4',
      VALHALLA_REAL_DATA_INGEST: '1',
      VALHALLA_DRY_RUN: '0',
      ...PARTNER,
    });
    expect(error.issues).toEqual([
      expect.objectContaining({ setting: 'VALHALLA_DISABLE_OUTBOUND', value: '1 (default)' }),
    ]);
  });

  it('refuses an unknown VALHALLA_* variable (a typo) and suggests the one it meant', () => {
    const error = refuse({ ...LIVE, VALHALLA_MAX_LEADS_PER_CYLCE: '500' });
    const issue = issueFor(error, 'VALHALLA_MAX_LEADS_PER_CYLCE');
    expect(issue.problem).toContain('unknown variable (from the environment)');
    expect(issue.problem).toContain('did you mean VALHALLA_MAX_LEADS_PER_CYCLE?');
    // The limit it was meant to set is not silently left at its default either: the run is refused.
    expect(error.issues).toHaveLength(1);
  });

  it('does not echo the value of an unknown variable (a misspelt secret would be printed)', () => {
    const error = refuse({ VALHALLA_PSEUDONYM_SECERT: SECRET });
    expect(issueFor(error, 'VALHALLA_PSEUDONYM_SECERT').value).toBeUndefined();
    expect(error.message).not.toContain(SECRET);
  });

  it('refuses an unknown variable in the .env file, saying where it came from', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, '.env'), 'VALHALLA_RATELIMIT=3\n');
    expect(issueFor(refuse({}, cwd), 'VALHALLA_RATELIMIT').problem).toContain('(from the .env)');
  });

  it('ignores variables outside the VALHALLA_ prefix', () => {
    expect(load({ PATH: '/usr/bin', VALHALLAX: '1', HOME: '/root' }).phase).toBe(3);
  });
});

describe('loadConfig: the policy file', () => {
  it.each([
    ['leadsPerCycle', 101, '101', 'hard maximum 100'],
    ['actionsPerCycle', 11, '11', 'hard maximum 10'],
    ['dailyLeads', 10_001, '10001', 'hard maximum 10000'],
    ['minLeadScore', 39, '39', 'minimum score 40'],
    ['maxLeadAgeDays', 15, '15', 'hard maximum 14'],
    ['maxRetries', 4, '4', 'hard maximum 3'],
    ['rateLimitPerSecond', 6, '6', 'hard maximum 5'],
    ['maxConcurrentRequests', 6, '6', 'hard maximum 5'],
    ['apiTimeoutSeconds', 31, '31', 'hard maximum 30'],
    ['errorRateTolerance', 0.11, '0.11', 'hard maximum 0.1'],
    ['memoryPerProcessMb', 513, '513', 'hard maximum 512'],
  ])('refuses %s=%s naming the field, the value and the limit', (key, bad, shown, limit) => {
    const file = policyFile((p) => {
      p[key] = bad;
    });
    const error = refuse({ VALHALLA_POLICY_FILE: file });
    const issue = issueFor(error, `policy.${key}`);
    expect(issue.value).toBe(shown);
    expect(issue.problem).toContain(limit);
    expect(issue.problem).toContain(file);
  });

  it('refuses an unknown key under its own name', () => {
    const file = policyFile((p) => {
      p.leadsPerCylce = 500;
    });
    const error = refuse({ VALHALLA_POLICY_FILE: file });
    expect(error.issues).toHaveLength(1);
    const issue = issueFor(error, 'policy.leadsPerCylce');
    expect(issue.value).toBe('500');
    expect(issue.problem).toContain('unknown key');
  });

  it('refuses an unknown key inside a ramp stage', () => {
    const file = policyFile((p) => {
      (p.rampStages as Record<string, unknown>[])[1]!.skipConfirm = true;
    });
    expect(issueFor(refuse({ VALHALLA_POLICY_FILE: file }), 'policy.rampStages.1.skipConfirm').value).toBe(
      'true',
    );
  });

  it('refuses ramp stages out of order', () => {
    const file = policyFile((p) => {
      const stages = p.rampStages as { fromHour: number }[];
      [stages[1], stages[2]] = [stages[2]!, stages[1]!];
    });
    const issue = issueFor(refuse({ VALHALLA_POLICY_FILE: file }), 'policy.rampStages.2.fromHour');
    expect(issue.value).toBe('2');
    expect(issue.problem).toContain('ramp stages must start later one after another');
  });

  it('refuses a ramp stage above leadsPerCycle', () => {
    const file = policyFile((p) => {
      p.leadsPerCycle = 8;
    });
    expect(
      issueFor(refuse({ VALHALLA_POLICY_FILE: file }), 'policy.rampStages.2.leadsPerCycle').problem,
    ).toContain('above leadsPerCycle 8');
  });

  it('refuses a policy file that is not valid JSON', () => {
    const file = join(tempDir(), 'policy.json');
    writeFileSync(file, '{ "leadsPerCycle": 25, ');
    const error = refuse({ VALHALLA_POLICY_FILE: file });
    const issue = issueFor(error, 'VALHALLA_POLICY_FILE');
    expect(issue.value).toBe(file);
    expect(issue.problem).toContain('not valid JSON');
  });

  it('refuses a missing policy file', () => {
    const file = join(tempDir(), 'nowhere', 'policy.json');
    const issue = issueFor(refuse({ VALHALLA_POLICY_FILE: file }), 'VALHALLA_POLICY_FILE');
    expect(issue.value).toBe(file);
    expect(issue.problem).toContain('no such file');
  });

  it('reads a relative VALHALLA_POLICY_FILE against the working folder', () => {
    const file = policyFile((p) => {
      p.leadsPerCycle = 20;
    });
    const cwd = join(file, '..');
    const config = load({ VALHALLA_POLICY_FILE: 'policy.json' }, cwd);
    expect(config.policyFile).toBe(file);
    expect(config.limits.leadsPerCycle).toBe(20);
    expect(config.sources.VALHALLA_MAX_LEADS_PER_CYCLE).toBe('policy file');
  });
});

describe('loadConfig: the policy hash', () => {
  const hashOf = (file: string) => load({ VALHALLA_POLICY_FILE: file }).policyHash;
  const shippedHash = hashOf(DEFAULT_POLICY_FILE);

  it('is a SHA-256 hex digest, the same for the same policy with its keys reordered', () => {
    expect(shippedHash).toMatch(/^[0-9a-f]{64}$/);
    const reordered = join(tempDir(), 'policy.json');
    const reverse = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).reverse());
    const policy = reverse(structuredClone(SHIPPED_POLICY));
    policy.rampStages = (policy.rampStages as Record<string, unknown>[]).map(reverse);
    writeFileSync(reordered, JSON.stringify(policy));
    expect(readFileSync(reordered, 'utf8')).not.toBe(JSON.stringify(SHIPPED_POLICY));
    expect(hashOf(reordered)).toBe(shippedHash);
  });

  it('hashes the canonical form: policyHash of the same document with keys reordered is equal', () => {
    const policy = loadPolicyFile(DEFAULT_POLICY_FILE);
    const reordered = Object.fromEntries(Object.entries(policy).reverse()) as unknown as PolicyDocument;
    expect(Object.keys(reordered)[0]).not.toBe(Object.keys(policy)[0]);
    expect(policyHash(reordered)).toBe(policyHash(policy));
    expect(policyHash(reordered)).toBe(shippedHash);
  });

  // Every number of the policy (nested ones too), moved to another valid value, must change the hash.
  const numberPaths: (string | number)[][] = [];
  const collect = (node: unknown, path: (string | number)[]) => {
    if (typeof node === 'number') numberPaths.push(path);
    else if (Array.isArray(node)) {
      for (const [i, child] of node.entries()) collect(child, [...path, i]);
    } else if (node !== null && typeof node === 'object')
      for (const [k, v] of Object.entries(node)) collect(v, [...path, k]);
  };
  collect(SHIPPED_POLICY, []);
  const setAt = (root: Record<string, unknown>, path: (string | number)[], value: unknown) => {
    let node = root as Record<string | number, unknown>;
    for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
    node[path.at(-1)!] = value;
  };
  const getAt = (root: unknown, path: (string | number)[]) =>
    path.reduce<unknown>((node, key) => (node as Record<string | number, unknown>)[key], root);
  /** The first of a few nearby values the schema accepts, or null when the number is fixed by the schema. */
  const validNudge = (path: (string | number)[]): string | null => {
    const n = getAt(SHIPPED_POLICY, path) as number;
    for (const candidate of [n - 1, n + 1, n / 2, n * 2].filter((c) => c !== n)) {
      const file = policyFile((p) => setAt(p, path, candidate));
      try {
        loadPolicyFile(file);
        return file;
      } catch {
        // Not valid: try the next one.
      }
    }
    return null;
  };

  it('finds every number of the policy, nested ones included', () => {
    expect(numberPaths.map((p) => p.join('.'))).toEqual(
      expect.arrayContaining([
        'leadsPerCycle',
        'minLeadScore',
        'errorRateTolerance',
        'backoffSeconds.2',
        'rampStages.1.leadsPerCycle',
        'rampStages.3.fromHour',
      ]),
    );
    expect(numberPaths.length).toBeGreaterThanOrEqual(28);
  });

  // The three limits the release manifest carries itself (a lowering needs no signature, a raise a
  // CFO amendment): moving one of them leaves the policy hash as it is.
  const manifestLimits = ['leadsPerCycle', 'actionsPerCycle', 'rateLimitPerSecond'];
  it.each(manifestLimits)('does not change when %s changes (the release manifest carries it)', (label) => {
    const file = validNudge([label]);
    expect(file, `no valid value near ${label}`).not.toBeNull();
    expect(loadPolicyFile(file!)[label as 'leadsPerCycle']).not.toBe(SHIPPED_POLICY[label]);
    expect(hashOf(file!)).toBe(shippedHash);
  });

  it.each(
    numberPaths.filter((p) => !manifestLimits.includes(p.join('.'))).map((p) => [p.join('.'), p] as const),
  )('changes when %s changes', (label, path) => {
    const file = validNudge(path);
    if (label === 'rampStages.0.fromHour') {
      // The schema pins the first stage to hour 0: no other valid value to hash.
      expect(file).toBeNull();
      return;
    }
    expect(file, `no valid value near ${label}`).not.toBeNull();
    const hash = hashOf(file!);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hash).not.toBe(shippedHash);
  });

  it.each([
    ['policyVersion', 'Phase 4 Policy v1.1'],
    ['rampStages.0.confirmEachCycle', false],
    ['rampStages.3.leadsPerCycle', 25],
  ])('changes when %s changes', (label, value) => {
    expect(
      hashOf(
        policyFile((p) =>
          setAt(
            p,
            label.split('.').map((k) => (/^\d+$/.test(k) ? Number(k) : k)),
            value,
          ),
        ),
      ),
    ).not.toBe(shippedHash);
  });

  it('does not depend on the environment limits (those are checked against the caps, not signed)', () => {
    expect(load({ VALHALLA_MAX_LEADS_PER_CYCLE: '10' }).policyHash).toBe(shippedHash);
  });
});

describe('loadConfig: defaults, sources, .env', () => {
  it('defaults to the safe Phase 3 with no actions per cycle', () => {
    const config = load({});
    expect(config.phase).toBe(3);
    expect(config.dryRun).toBe(true);
    expect(config.outboundDisabled).toBe(true);
    expect(config.realDataIngest).toBe(false);
    expect(config.limits).toEqual({ leadsPerCycle: 25, actionsPerCycle: 0, rateLimitPerSecond: 5 });
    expect(config.dedupKey).toBe('email');
    expect(config.logLevel).toBe('info');
    expect(config.logFile).toBeNull();
    expect(config.policyFile).toBe(DEFAULT_POLICY_FILE);
    expect(config.pseudonymSecret).toBeNull();
    expect(config.sources.VALHALLA_PHASE).toBe('default');
    expect(config.sources.VALHALLA_MAX_ACTIONS_PER_CYCLE).toBe('default');
    expect(config.sources.VALHALLA_MAX_LEADS_PER_CYCLE).toBe('policy file');
  });

  it('loads a valid Phase 4 configuration with 5 actions per cycle from the policy file', () => {
    const config = load(LIVE);
    expect(config.phase).toBe(4);
    expect(config.dryRun).toBe(false);
    expect(config.outboundDisabled).toBe(false);
    expect(config.realDataIngest).toBe(true);
    expect(config.limits).toEqual({ leadsPerCycle: 25, actionsPerCycle: 5, rateLimitPerSecond: 5 });
    expect(config.sources.VALHALLA_MAX_ACTIONS_PER_CYCLE).toBe('policy file');
    expect(config.sources.VALHALLA_PHASE).toBe('environment');
  });

  it('reads the .env file; the real environment wins over it', () => {
    const cwd = tempDir();
    writeFileSync(
      join(cwd, '.env'),
      'VALHALLA_MAX_LEADS_PER_CYCLE=30\nVALHALLA_LOG_LEVEL=debug\nVALHALLA_OPERATOR=from-dotenv\n',
    );
    const config = load({ VALHALLA_LOG_LEVEL: 'warn' }, cwd);
    expect(config.limits.leadsPerCycle).toBe(30);
    expect(config.sources.VALHALLA_MAX_LEADS_PER_CYCLE).toBe('.env');
    expect(config.operator).toBe('from-dotenv');
    expect(config.logLevel).toBe('warn');
    expect(config.sources.VALHALLA_LOG_LEVEL).toBe('environment');
  });

  it('validates .env values like any other: a limit above the hard maximum there is refused', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, '.env'), 'VALHALLA_MAX_ACTIONS_PER_CYCLE=11\n');
    expect(issueFor(refuse({}, cwd), 'VALHALLA_MAX_ACTIONS_PER_CYCLE').value).toBe('11');
    // ...while a valid value in the environment overrides the bad one in the file.
    expect(load({ VALHALLA_MAX_ACTIONS_PER_CYCLE: '2' }, cwd).limits.actionsPerCycle).toBe(2);
  });

  it('reads the file VALHALLA_ENV_FILE names, and refuses one that is missing', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'prod.env'), 'VALHALLA_RATE_LIMIT=2\n');
    expect(load({ VALHALLA_ENV_FILE: 'prod.env' }, cwd).limits.rateLimitPerSecond).toBe(2);
    expect(issueFor(refuse({ VALHALLA_ENV_FILE: 'missing.env' }, cwd), 'VALHALLA_ENV_FILE').problem).toBe(
      'no such file',
    );
  });

  it('returns a deeply frozen Config', () => {
    const config = load(LIVE);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.limits)).toBe(true);
    expect(Object.isFrozen(config.policy)).toBe(true);
    expect(Object.isFrozen(config.policy.rampStages[0])).toBe(true);
    expect(() => {
      (config.limits as { leadsPerCycle: number }).leadsPerCycle = 100;
    }).toThrow(TypeError);
    expect(() => {
      (config as { phase: number }).phase = 3;
    }).toThrow(TypeError);
    expect(config.limits.leadsPerCycle).toBe(25);
    expect(config.phase).toBe(4);
  });
});

describe('loadConfig: the pseudonym secret', () => {
  it('refuses a secret shorter than 32 characters without echoing it', () => {
    const short = 'abcdef0123456789abcdef012345678'; // 31
    const error = refuse({ VALHALLA_PSEUDONYM_SECRET: short });
    const issue = issueFor(error, 'VALHALLA_PSEUDONYM_SECRET');
    expect(issue.value).toBe('(secret)');
    expect(issue.problem).toContain('at least 32 characters');
    expect(error.message).not.toContain(short);
    expect(load({ VALHALLA_PSEUDONYM_SECRET: `${short}9` }).pseudonymSecret).toBe(`${short}9`);
  });

  it('refuses a secret file readable by group or others (mode 0644)', () => {
    const file = join(tempDir(), 'pseudonym.key');
    writeFileSync(file, `${SECRET}\n`, { mode: 0o644 });
    chmodSync(file, 0o644);
    const error = refuse({ VALHALLA_PSEUDONYM_SECRET_FILE: file });
    const issue = issueFor(error, 'VALHALLA_PSEUDONYM_SECRET_FILE');
    expect(issue.value).toBe(file);
    expect(issue.problem).toContain('mode 644');
    expect(issue.problem).toContain('chmod 600');
    expect(error.message).not.toContain(SECRET);
  });

  it('reads a secret file of mode 0600; refuses one with a short secret or none at the path', () => {
    const dir = tempDir();
    const file = join(dir, 'pseudonym.key');
    writeFileSync(file, `${SECRET}\n`, { mode: 0o600 });
    expect(load({ VALHALLA_PSEUDONYM_SECRET_FILE: file }).pseudonymSecret).toBe(SECRET);

    const short = join(dir, 'short.key');
    writeFileSync(short, 'too-short\n', { mode: 0o600 });
    expect(
      issueFor(refuse({ VALHALLA_PSEUDONYM_SECRET_FILE: short }), 'VALHALLA_PSEUDONYM_SECRET_FILE').problem,
    ).toContain('too short');
    expect(
      issueFor(
        refuse({ VALHALLA_PSEUDONYM_SECRET_FILE: join(dir, 'none.key') }),
        'VALHALLA_PSEUDONYM_SECRET_FILE',
      ).problem,
    ).toBe('no such file');
  });
});

describe('describeConfig: secrets masked', () => {
  it('masks VALHALLA_PSEUDONYM_SECRET', () => {
    const described = describeConfig(load({ VALHALLA_PSEUDONYM_SECRET: SECRET }));
    expect(JSON.stringify(described)).not.toContain(SECRET);
    const row = described.variables.find((v) => v.name === 'VALHALLA_PSEUDONYM_SECRET');
    expect(row).toEqual({
      name: 'VALHALLA_PSEUDONYM_SECRET',
      value: '******** (set)',
      source: 'environment',
    });
  });

  it.each([
    [
      'postgres://valhalla:Sup3rS3cretPw@db.example:5432/valhalla',
      'postgres://valhalla:***@db.example:5432/valhalla',
    ],
    [
      'postgresql://valhalla:Sup3rS3cretPw@db.example/valhalla?sslmode=require',
      'postgresql://valhalla:***@db.example/valhalla?sslmode=require',
    ],
  ])('masks the password of %s', (url, masked) => {
    const described = describeConfig(load({ VALHALLA_DATABASE_URL: url }));
    expect(JSON.stringify(described)).not.toContain('Sup3rS3cretPw');
    expect(described.variables.find((v) => v.name === 'VALHALLA_DATABASE_URL')?.value).toBe(masked);
  });

  it('masks the password of a URL with ?schema=', () => {
    const config = load({
      VALHALLA_DATABASE_URL: 'postgres://valhalla:Sup3rS3cretPw@db.example/valhalla?schema=tenant_a',
    });
    expect(config.database).toMatchObject({ kind: 'postgres', schema: 'tenant_a' });
    expect(JSON.stringify(describeConfig(config))).not.toContain('Sup3rS3cretPw');
  });

  it('masks a password that holds an unencoded @', () => {
    expect(maskSecrets('postgres://u:pa@ss@db.example/x')).toBe('postgres://u:***@db.example/x');
    expect(maskSecrets('postgres://u@db.example/x')).toBe('postgres://u@db.example/x');
  });

  it('does not echo the password when refusing a postgres URL', () => {
    const error = refuse({
      VALHALLA_DATABASE_URL: 'postgres://valhalla:Sup3rS3cretPw@db.example/valhalla?schema=Bad-Name',
    });
    expect(issueFor(error, 'VALHALLA_DATABASE_URL').problem).toContain('schema=');
    expect(error.message).not.toContain('Sup3rS3cretPw');
  });
});

describe('ConfigError', () => {
  it('is an Error with a code and the issues', () => {
    const error = refuse({ VALHALLA_MAX_LEADS_PER_CYCLE: '101' });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ConfigError');
    expect(isConfigError(new Error('x'))).toBe(false);
  });
});

describe('loadConfig: the partner', () => {
  it('Phase 4 requires the partner URL, token URL, client id and secret, naming each missing one', () => {
    const { VALHALLA_PARTNER_URL: _u, VALHALLA_PARTNER_CLIENT_SECRET: _s, ...rest } = LIVE;
    const error = refuse(rest);
    expect(error.issues.map((i) => [i.setting, i.problem])).toEqual([
      ['VALHALLA_PARTNER_URL', 'required in Phase 4'],
      [
        'VALHALLA_PARTNER_CLIENT_SECRET',
        "required in Phase 4 (the partner profile's auth is oauth2_client_credentials)",
      ],
    ]);
  });

  it('refuses plain http:// in Phase 4, even to loopback', () => {
    const error = refuse({ ...LIVE, VALHALLA_PARTNER_URL: 'http://127.0.0.1:8443' });
    expect(issueFor(error, 'VALHALLA_PARTNER_URL').problem).toContain('plain http:// is refused in Phase 4');
  });

  it('allows http:// only to a loopback sandbox in Phase 3', () => {
    expect(load({ VALHALLA_PARTNER_URL: 'http://127.0.0.1:8443/' }).partner.url).toBe(
      'http://127.0.0.1:8443',
    );
    expect(load({ VALHALLA_PARTNER_URL: 'http://localhost:8443' }).partner.url).toBe('http://localhost:8443');
    const error = refuse({ VALHALLA_PARTNER_URL: 'http://partner.example.test' });
    expect(issueFor(error, 'VALHALLA_PARTNER_URL').problem).toContain('only to a loopback sandbox');
  });

  it('refuses a URL with credentials in it, without echoing them', () => {
    const error = refuse({ ...LIVE, VALHALLA_PARTNER_URL: 'https://user:hunter2@partner.example.test' });
    const issue = issueFor(error, 'VALHALLA_PARTNER_URL');
    expect(issue.problem).toContain('credentials do not belong in the URL');
    expect(error.message).not.toContain('hunter2');
  });

  it('refuses a missing or non-PEM CA file', () => {
    const missing = refuse({ ...LIVE, VALHALLA_PARTNER_CA_FILE: '/nonexistent/ca.pem' });
    expect(issueFor(missing, 'VALHALLA_PARTNER_CA_FILE').problem).toBe('no such file');
    const file = join(tempDir(), 'ca.pem');
    writeFileSync(file, 'not a certificate');
    const bad = refuse({ ...LIVE, VALHALLA_PARTNER_CA_FILE: file });
    expect(issueFor(bad, 'VALHALLA_PARTNER_CA_FILE').problem).toBe('not a PEM certificate bundle');
  });

  it('masks the client secret in describeConfig and shows the cycle interval', () => {
    const config = load({ ...LIVE, VALHALLA_PSEUDONYM_SECRET: SECRET, VALHALLA_CYCLE_INTERVAL_S: '60' });
    const shown = describeConfig(config).variables;
    const secret = shown.find((v) => v.name === 'VALHALLA_PARTNER_CLIENT_SECRET');
    expect(secret?.value).toBe('******** (set)');
    expect(JSON.stringify(shown)).not.toContain('partner-client-secret-value');
    expect(shown.find((v) => v.name === 'VALHALLA_CYCLE_INTERVAL_S')?.value).toBe('60');
    expect(config.cycleIntervalSeconds).toBe(60);
  });

  it('refuses a cycle interval that is not a whole number of seconds from 1 to 86400', () => {
    for (const value of ['0', '1.5', 'soon', '86401']) {
      expect(issueFor(refuse({ VALHALLA_CYCLE_INTERVAL_S: value }), 'VALHALLA_CYCLE_INTERVAL_S').value).toBe(
        value,
      );
    }
    expect(load({}).cycleIntervalSeconds).toBe(300);
  });
});

describe('loadConfig: the admin API and dashboard (VALHALLA_SERVER_*, VALHALLA_API_TOKENS)', () => {
  const HASH = 'a'.repeat(64);

  it('defaults to 127.0.0.1:8080 with no tokens; off switches it off; 0 is any free port', () => {
    expect(load({}).server).toEqual({ port: 8080, host: '127.0.0.1', publicHost: null, tokens: [] });
    expect(load({ VALHALLA_SERVER_PORT: 'off' }).server.port).toBeNull();
    expect(load({ VALHALLA_SERVER_PORT: '0' }).server.port).toBe(0);
    expect(load({ VALHALLA_SERVER_HOST: '::1' }).server.host).toBe('::1');
  });

  it.each(['99999', 'eighty', '-1', '80.5'])('refuses the port %s', (port) => {
    expect(issueFor(refuse({ VALHALLA_SERVER_PORT: port }), 'VALHALLA_SERVER_PORT').problem).toBe(
      'must be a port number (0 for any free port) or off',
    );
  });

  it.each(['0.0.0.0', '10.0.0.5', 'dashboard.example.com'])(
    'refuses a host that is not loopback: %s',
    (host) => {
      const issue = issueFor(refuse({ VALHALLA_SERVER_HOST: host }), 'VALHALLA_SERVER_HOST');
      expect(issue.value).toBe(host);
      expect(issue.problem).toMatch(/must be a loopback address/);
    },
  );

  it('reads name:role:sha256 entries', () => {
    const config = load({ VALHALLA_API_TOKENS: `alice:operator:${HASH}, bob@ops:viewer:${'b'.repeat(64)}` });
    expect(config.server.tokens).toEqual([
      { name: 'alice', role: 'operator', sha256: HASH },
      { name: 'bob@ops', role: 'viewer', sha256: 'b'.repeat(64) },
    ]);
  });

  it.each([
    ['alice:operator', 'must be name:role:sha256'],
    [`alice:root:${HASH}`, 'the role must be one of viewer, operator, admin, not "root"'],
    ['alice:admin:vh_the-token-itself', 'the hash must be 64 lowercase hex characters'],
    [`al ice:admin:${HASH}`, 'the name must be 1-64 letters'],
    [`alice:admin:${HASH}:extra`, 'must be name:role:sha256'],
  ])('refuses the entry %s, naming the entry but never echoing a value', (entry, problem) => {
    const error = refuse({ VALHALLA_API_TOKENS: `ok:viewer:${HASH},${entry}` });
    const issue = issueFor(error, 'VALHALLA_API_TOKENS');
    expect(issue.value).toMatch(/^entry 2 /);
    expect(issue.problem).toContain(problem);
    expect(error.message).not.toContain('vh_the-token-itself');
  });

  it.each([
    'vh_Zq9PastedToken-abc_DEF',
    `vh_Zq9PastedToken-abc_DEF:operator:${HASH}`,
    'alice:vh_Zq9PastedToken-abc_DEF:x',
    'vh_Zq9PastedToken-abc_DEF:admin',
  ])('never echoes a token pasted into an entry (%s): the entry is named by position only', (entry) => {
    const error = refuse({ VALHALLA_API_TOKENS: `ok:viewer:${HASH},${entry}` });
    expect(issueFor(error, 'VALHALLA_API_TOKENS').value).toMatch(/^entry 2 \((not shown|alice)\)$/);
    expect(`${error.message}${JSON.stringify(error.issues)}`).not.toContain('Zq9PastedToken');
  });

  it('refuses a name used twice', () => {
    const issue = issueFor(
      refuse({ VALHALLA_API_TOKENS: `alice:viewer:${HASH},alice:admin:${'c'.repeat(64)}` }),
      'VALHALLA_API_TOKENS',
    );
    expect(issue.problem).toBe('this name is already used by an earlier entry');
  });

  it('describeConfig shows the holders and roles, never the hashes', () => {
    const described = describeConfig(load({ VALHALLA_API_TOKENS: `alice:operator:${HASH}` }));
    expect(JSON.stringify(described)).not.toContain(HASH);
    expect(described.variables.find((v) => v.name === 'VALHALLA_API_TOKENS')?.value).toBe('alice (operator)');
  });
});

describe('loadConfig: the public host name (VALHALLA_PUBLIC_HOST)', () => {
  it.each(['valhalla.example.com', 'Valhalla.Example.com:8443', '203.0.113.7', '[2001:db8::1]:443'])(
    'takes %s, lower-cased',
    (host) => {
      expect(load({ VALHALLA_PUBLIC_HOST: host }).server.publicHost).toBe(host.toLowerCase());
    },
  );
  it.each(['https://valhalla.example.com', 'valhalla.example.com/dash', 'a b', 'host:99999', '-x.example'])(
    'refuses %s',
    (host) => {
      expect(issueFor(refuse({ VALHALLA_PUBLIC_HOST: host }), 'VALHALLA_PUBLIC_HOST').problem).toMatch(
        /must be a host name/,
      );
    },
  );
});

describe('loadConfig: the retention window (VALHALLA_RETENTION_DAYS)', () => {
  it('is off by default: no window, and config show says so', () => {
    const config = load({});
    expect(config.retentionDays).toBeNull();
    expect(config.sources.VALHALLA_RETENTION_DAYS).toBe('default');
    expect(describeConfig(config).variables.find((v) => v.name === 'VALHALLA_RETENTION_DAYS')?.value).toBe(
      '(not set: no retention window)',
    );
  });

  it.each([
    ['1', 1],
    ['30', 30],
    [' 365 ', 365],
    ['3650', 3650],
  ])('reads %j as %d days', (value, days) => {
    const config = load({ VALHALLA_RETENTION_DAYS: value });
    expect(config.retentionDays).toBe(days);
    expect(config.sources.VALHALLA_RETENTION_DAYS).toBe('environment');
    expect(describeConfig(config).variables.find((v) => v.name === 'VALHALLA_RETENTION_DAYS')?.value).toBe(
      `${days} days`,
    );
  });

  it('is read from .env too', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, '.env'), 'VALHALLA_RETENTION_DAYS=90\n');
    const config = load({}, cwd);
    expect(config.retentionDays).toBe(90);
    expect(config.sources.VALHALLA_RETENTION_DAYS).toBe('.env');
  });

  it.each([
    ['0', 'below the minimum 1 day'],
    ['3651', 'above the maximum 3650 days'],
    ['99999', 'above the maximum 3650 days'],
    ['30d', 'not a whole number of days from 1 to 3650'],
    ['1.5', 'not a whole number of days from 1 to 3650'],
    ['-7', 'not a whole number of days from 1 to 3650'],
    ['', 'not a whole number of days from 1 to 3650'],
  ])('refuses %j, naming the variable, the value and why (never clamped)', (value, problem) => {
    const error = refuse({ VALHALLA_RETENTION_DAYS: value });
    expect(error.issues).toHaveLength(1);
    const issue = issueFor(error, 'VALHALLA_RETENTION_DAYS');
    expect(issue.value).toBe(value);
    expect(issue.problem).toContain(problem);
    expect(error.message).toContain(`VALHALLA_RETENTION_DAYS=${JSON.stringify(value)}`);
  });

  it('a misspelt name is refused as unknown, pointing at the right one', () => {
    const issue = issueFor(refuse({ VALHALLA_RETENTION_DAY: '30' }), 'VALHALLA_RETENTION_DAY');
    expect(issue.problem).toContain('did you mean VALHALLA_RETENTION_DAYS?');
  });
});

describe('loadConfig: the partner profile', () => {
  const crmLive: Env = {
    ...LIVE,
    VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts',
    VALHALLA_PARTNER_TOKEN_URL: undefined,
    VALHALLA_PARTNER_CLIENT_ID: undefined,
    VALHALLA_PARTNER_CLIENT_SECRET: undefined,
  };

  it('is the shipped valhalla profile by default, and a shipped one by its name', () => {
    const byDefault = load({});
    expect(byDefault.partner.profile.profile.name).toBe('valhalla');
    expect(byDefault.partner.profile.sha256).toMatch(/^[0-9a-f]{64}$/);
    const crm = load({ VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts' });
    expect(crm.partner.profile.profile.name).toBe('crm-batch-contacts');
    expect(crm.partner.profile.sha256).not.toBe(byDefault.partner.profile.sha256);
    const shown = describeConfig(crm).variables.find((v) => v.name === 'VALHALLA_PARTNER_PROFILE');
    expect(shown?.value).toContain('crm-batch-contacts');
  });

  it('reads a profile file relative to the working folder, whatever folder the command runs from', () => {
    const cwd = tempDir();
    const shipped = readFileSync(
      join(DEFAULT_POLICY_FILE, '..', 'partners', 'crm-batch-contacts.json'),
      'utf8',
    );
    writeFileSync(join(cwd, 'mine.json'), shipped.replace('"crm-batch-contacts"', '"mine"'));
    const config = load({ VALHALLA_PARTNER_PROFILE: 'mine.json' }, cwd);
    expect(config.partner.profile.profile.name).toBe('mine');
    expect(config.partner.profile.file).toBe(join(cwd, 'mine.json'));
  });

  it('refuses a name no shipped profile has, listing the shipped ones', () => {
    const issue = issueFor(refuse({ VALHALLA_PARTNER_PROFILE: 'hubspot' }), 'VALHALLA_PARTNER_PROFILE');
    expect(issue.problem).toContain('no shipped profile has this name');
    expect(issue.problem).toContain('crm-batch-contacts');
    expect(issue.problem).toContain('valhalla');
  });

  it('refuses at start a profile that does not parse, maps a field that does not exist or lacks a part: the file, the path inside it and why', () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'broken.json'), '{ "name": "x",\n  "description": }');
    const notJson = refuse({ VALHALLA_PARTNER_PROFILE: 'broken.json' }, cwd);
    expect(notJson.message).toContain(join(cwd, 'broken.json'));
    expect(notJson.message).toMatch(/is not JSON: .* at line 2, column \d+/);

    const shipped = JSON.parse(
      readFileSync(join(DEFAULT_POLICY_FILE, '..', 'partners', 'valhalla.json'), 'utf8'),
    ) as { fields: { from: string }[]; answer?: unknown };
    shipped.fields[2]!.from = 'nickname';
    delete shipped.answer;
    writeFileSync(join(cwd, 'wrong.json'), JSON.stringify(shipped, null, 2));
    const wrong = refuse({ VALHALLA_PARTNER_PROFILE: 'wrong.json' }, cwd);
    const problems = wrong.issues.filter((i) => i.setting === 'VALHALLA_PARTNER_PROFILE');
    expect(problems.every((i) => i.value === join(cwd, 'wrong.json'))).toBe(true);
    expect(problems.map((i) => i.problem)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^answer: is missing/)]),
    );
    // The mapping's source is checked once the shape is whole: fixed the shape, the field is named.
    (shipped as { answer?: unknown }).answer = JSON.parse(
      readFileSync(join(DEFAULT_POLICY_FILE, '..', 'partners', 'valhalla.json'), 'utf8'),
    ).answer;
    writeFileSync(join(cwd, 'wrong.json'), JSON.stringify(shipped, null, 2));
    const unknownField = issueFor(
      refuse({ VALHALLA_PARTNER_PROFILE: 'wrong.json' }, cwd),
      'VALHALLA_PARTNER_PROFILE',
    );
    expect(unknownField.problem).toMatch(/^fields\[2\]\.from: .*nickname/);
    expect(refuse({ VALHALLA_PARTNER_PROFILE: 'missing.json' }, cwd).message).toContain(
      'cannot be read (ENOENT)',
    );
  });

  it("Phase 4 asks for the credentials of the profile's auth kind, and no others", () => {
    const error = refuse(crmLive);
    expect(error.issues.map((i) => [i.setting, i.problem])).toEqual([
      ['VALHALLA_PARTNER_BEARER_TOKEN', "required in Phase 4 (the partner profile's auth is bearer)"],
    ]);
    const config = load({ ...crmLive, VALHALLA_PARTNER_BEARER_TOKEN: 'crm-private-app-token' });
    expect(config.partner.bearerToken).toBe('crm-private-app-token');
    expect(config.partner.tokenUrl).toBeNull();
    const shown = describeConfig(config).variables;
    expect(shown.find((v) => v.name === 'VALHALLA_PARTNER_BEARER_TOKEN')?.value).toBe('******** (set)');
    expect(JSON.stringify(shown)).not.toContain('crm-private-app-token');
    const spaced = refuse({ ...crmLive, VALHALLA_PARTNER_BEARER_TOKEN: 'two words' });
    expect(issueFor(spaced, 'VALHALLA_PARTNER_BEARER_TOKEN').value).toBe('(secret)');
    expect(spaced.message).not.toContain('two words');
  });

  it("takes the OAuth2 token URL from the profile's token path when VALHALLA_PARTNER_TOKEN_URL is not set", () => {
    const config = load({
      ...LIVE,
      VALHALLA_PARTNER_URL: 'https://partner.example.test/v2/',
      VALHALLA_PARTNER_TOKEN_URL: undefined,
    });
    expect(config.partner.tokenUrl).toBe('https://partner.example.test/v2/oauth/token');
    expect(load(LIVE).partner.tokenUrl).toBe('https://partner.example.test/oauth/token');
  });
});
