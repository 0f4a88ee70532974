import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { canonicalJson, deepFreeze, HARD_CAPS } from '../policy/index.js';
import { ConfigError, type ConfigIssue } from './errors.js';

const atMost = (hardMax: number, what: string) =>
  z
    .number({ error: 'must be a number' })
    .positive({ error: 'must be above 0' })
    .max(hardMax, { error: `above the hard maximum ${hardMax} ${what} (refused, not clamped)` });

const wholeAtMost = (hardMax: number, what: string) =>
  atMost(hardMax, what).int({ error: 'must be a whole number' });

const rampStage = z.strictObject({
  fromHour: z.number().int().min(0),
  leadsPerCycle: wholeAtMost(HARD_CAPS.leadsPerCycle, 'leads per cycle').nullable(),
  confirmEachCycle: z.boolean(),
});

/** The policy file: every number of the policy's §4 table and the windows the product needs. */
export const policySchema = z
  .strictObject({
    policyVersion: z.string().min(1),
    leadsPerCycle: wholeAtMost(HARD_CAPS.leadsPerCycle, 'leads per cycle'),
    actionsPerCycle: wholeAtMost(HARD_CAPS.actionsPerCycle, 'actions per cycle'),
    dailyLeads: wholeAtMost(HARD_CAPS.dailyLeads, 'leads per day'),
    budgetExposure: atMost(HARD_CAPS.budgetExposure, 'budget exposure (Σ score × value)'),
    maxLeadAgeDays: atMost(HARD_CAPS.maxLeadAgeDays, 'days of lead age'),
    minLeadScore: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be a whole number' })
      .min(HARD_CAPS.minLeadScoreFloor, {
        error: `below the policy's minimum score ${HARD_CAPS.minLeadScoreFloor} (refused)`,
      })
      .max(100, { error: 'scores go up to 100' }),
    apiTimeoutSeconds: atMost(HARD_CAPS.apiTimeoutSeconds, 'seconds per request'),
    maxRetries: z
      .number()
      .int()
      .min(0)
      .max(HARD_CAPS.maxRetries, {
        error: `above the hard maximum ${HARD_CAPS.maxRetries} retries (refused, not clamped)`,
      }),
    backoffSeconds: z.array(z.number().positive().max(60)).min(1),
    errorRateTolerance: atMost(HARD_CAPS.errorRateTolerance, 'error rate'),
    errorRateWindowMinutes: z
      .number()
      .int()
      .positive()
      .max(24 * 60),
    alertFailuresPerHour: z
      .number()
      .int()
      .positive()
      .max(5, { error: 'the policy alerts at 5 failures an hour or fewer' }),
    memoryPerProcessMb: wholeAtMost(HARD_CAPS.memoryPerProcessMb, 'MB per process'),
    maxConcurrentRequests: wholeAtMost(HARD_CAPS.maxConcurrentRequests, 'concurrent requests'),
    rateLimitPerSecond: atMost(HARD_CAPS.rateLimitPerSecond, 'requests per second'),
    rateWindowMs: z.number().int().min(1000, { error: 'the rate window is at least 1000 ms' }).max(10_000),
    heartbeatIntervalSeconds: z
      .number()
      .int()
      .positive()
      .max(30, { error: 'the policy checks the heartbeat every 30 s' }),
    heartbeatGraceSeconds: z
      .number()
      .int()
      .min(0)
      .max(30, { error: 'a grace longer than the heartbeat interval would hide a missed beat' }),
    errorRateMinRequests: z.number().int().min(1).max(100),
    errorRateConsecutiveFailures: z
      .number()
      .int()
      .min(1)
      .max(3, { error: 'the policy wants a dead partner rolled back within 3 requests' }),
    alertDedupMinutes: z
      .number()
      .int()
      .min(1)
      .max(60, { error: 'a repeat alert is suppressed for at most an hour' }),
    rollbackMaxMinutes: z
      .number()
      .positive()
      .max(5, { error: 'the policy wants a rollback in under 5 minutes' }),
    stabilityHours: z
      .number()
      .int()
      .min(72, { error: 'the policy requires at least 72 hours of Phase 3 stability' }),
    dailyRestartUtc: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, { error: 'must be HH:MM (UTC)' }),
    rampStages: z.array(rampStage).min(1),
  })
  .superRefine((policy, ctx) => {
    if (policy.backoffSeconds.length < policy.maxRetries) {
      ctx.addIssue({
        code: 'custom',
        path: ['backoffSeconds'],
        message: `needs a delay for each of the ${policy.maxRetries} retries`,
      });
    }
    for (let i = 1; i < policy.backoffSeconds.length; i++) {
      if (policy.backoffSeconds[i]! < policy.backoffSeconds[i - 1]!) {
        ctx.addIssue({
          code: 'custom',
          path: ['backoffSeconds', i],
          message: 'backoff delays must not shrink',
        });
      }
    }
    const stages = policy.rampStages;
    if (stages[0]?.fromHour !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['rampStages', 0, 'fromHour'],
        message: 'the first ramp stage starts at hour 0',
      });
    }
    for (let i = 1; i < stages.length; i++) {
      const before = stages[i - 1]!;
      const stage = stages[i]!;
      if (stage.fromHour <= before.fromHour) {
        ctx.addIssue({
          code: 'custom',
          path: ['rampStages', i, 'fromHour'],
          message: 'ramp stages must start later one after another',
        });
      }
      if (before.leadsPerCycle === null) {
        ctx.addIssue({
          code: 'custom',
          path: ['rampStages', i - 1, 'leadsPerCycle'],
          message: 'only the last ramp stage may be uncapped (null)',
        });
      } else if (stage.leadsPerCycle !== null && stage.leadsPerCycle < before.leadsPerCycle) {
        ctx.addIssue({
          code: 'custom',
          path: ['rampStages', i, 'leadsPerCycle'],
          message: 'a ramp stage never lowers the ceiling of the one before',
        });
      }
    }
    for (const [i, stage] of stages.entries()) {
      if (stage.leadsPerCycle !== null && stage.leadsPerCycle > policy.leadsPerCycle) {
        ctx.addIssue({
          code: 'custom',
          path: ['rampStages', i, 'leadsPerCycle'],
          message: `above leadsPerCycle ${policy.leadsPerCycle}`,
        });
      }
    }
  });

export type PolicyDocument = Readonly<z.infer<typeof policySchema>>;

/**
 * The policy's three limits that the release manifest carries apart (the running values, from the
 * environment or this file): lowering one needs no signature and raising one a CFO amendment, so
 * they are left out of the policy hash, and editing them here is judged like editing `.env`.
 */
export const MANIFEST_LIMIT_FIELDS = ['leadsPerCycle', 'actionsPerCycle', 'rateLimitPerSecond'] as const;

/**
 * SHA-256 over the canonical JSON of the validated policy, without the limits the release manifest
 * carries itself: what every signed document's manifest names as its policy.
 */
export function policyHash(policy: PolicyDocument): string {
  const numbers: Record<string, unknown> = { ...policy };
  for (const field of MANIFEST_LIMIT_FIELDS) delete numbers[field];
  return createHash('sha256').update(canonicalJson(numbers)).digest('hex');
}

/** Read and validate the policy file; every problem is reported at once with its field. */
export function loadPolicyFile(path: string): PolicyDocument {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    const reason =
      (cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String((cause as Error).message);
    throw new ConfigError(
      'POLICY_FILE_UNREADABLE',
      [{ setting: 'VALHALLA_POLICY_FILE', value: path, problem: `cannot read the policy file: ${reason}` }],
      { cause },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(
      'CONFIG_INVALID',
      [
        {
          setting: 'VALHALLA_POLICY_FILE',
          value: path,
          problem: `not valid JSON: ${(cause as Error).message}`,
        },
      ],
      { cause },
    );
  }
  const parsed = policySchema.safeParse(raw);
  if (!parsed.success) {
    const issues: ConfigIssue[] = parsed.error.issues.flatMap((issue) => {
      // An unknown key is reported under its own name (a typo of a limit must not pass unnoticed),
      // not as the whole object it sits in.
      const paths =
        issue.code === 'unrecognized_keys' ? issue.keys.map((key) => [...issue.path, key]) : [issue.path];
      return paths.map((at) => ({
        setting: `policy.${at.join('.') || '(root)'}`,
        value: valueAt(raw, at),
        problem: `${issue.code === 'unrecognized_keys' ? 'unknown key: not a setting of the policy file' : issue.message} (in ${path})`,
      }));
    });
    throw new ConfigError('CONFIG_INVALID', issues);
  }
  return deepFreeze(parsed.data);
}

function valueAt(root: unknown, path: readonly PropertyKey[]): string | undefined {
  let node: unknown = root;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node === undefined ? undefined : JSON.stringify(node);
}
