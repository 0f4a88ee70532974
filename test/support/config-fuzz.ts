/**
 * Generators for the configuration part of the input suite (test/input/config-properties.test.ts):
 * VALHALLA_* environments with hostile values, and mutations of the shipped policy file.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { DEFAULT_POLICY_FILE, KNOWN_VARIABLES } from '../../src/config/index.js';

export type Env = Record<string, string | undefined>;
/** config/policy.json as shipped: the document the mutations start from. */
export const SHIPPED_POLICY = JSON.parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8')) as Record<
  string,
  unknown
>;
export const POLICY_KEYS = Object.keys(SHIPPED_POLICY);
const SECRET_VARIABLES = [
  'VALHALLA_PSEUDONYM_SECRET',
  'VALHALLA_PARTNER_CLIENT_SECRET',
  'VALHALLA_SLACK_WEBHOOK_URL',
  'VALHALLA_SMTP_URL',
] as const;
const PATH_VARIABLES = new Set([
  'VALHALLA_DATA_DIR',
  'VALHALLA_POLICY_FILE',
  'VALHALLA_PSEUDONYM_SECRET_FILE',
  'VALHALLA_LOG_FILE',
  'VALHALLA_PARTNER_CA_FILE',
  'VALHALLA_ENV_FILE',
  'VALHALLA_DATABASE_URL',
]);
/** Replaced, per run, by a marker no other value holds: found in a message, it is the secret leaking. */
export const SLOT = '{S}';

const pad = fc.constantFrom('', '', ' ', '\t', '\n', '\u00a0', '\u3000', '\ufeff');
const numberText = fc.oneof(
  fc.integer({ min: -1_000, max: 1_000 }).map(String),
  fc.constantFrom(
    '0',
    '1',
    '3',
    '4',
    '5',
    '10',
    '11',
    '25',
    '100',
    '101',
    '512',
    '86400',
    '86401',
    '65535',
    '65536',
  ),
  fc.double({ noNaN: false }).map(String),
  fc.constantFrom(
    '5.0',
    '5.5',
    '4.999',
    '0.0',
    '0.5',
    '-0',
    '1e2',
    '1E1',
    '0x10',
    '0b11',
    '0o7',
    '+5',
    '5.',
    '.5',
  ),
  fc.constantFrom('１０', '٣', '10abc', '1_000', '1,000', 'NaN', 'Infinity', '-Infinity'),
  fc.bigInt({ min: 10n ** 20n, max: 10n ** 40n }).map(String),
);
const generic = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(pad, numberText, pad).map(([a, n, b]) => `${a}${n}${b}`) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 2, arbitrary: fc.string({ maxLength: 30 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '',
      ' ',
      'off',
      'true',
      'email',
      'external_id',
      'trace',
      'INFO',
      ':memory:',
      '/dev/null',
      'https://partner.example',
      'http://127.0.0.1:9',
      'http://partner.example',
      'https://user:pw@partner.example',
      'postgres://localhost/db?schema=Bad',
      'mysql://localhost/db',
      'ops@example.com',
      'not an address',
      'a:operator:abc',
      '::1',
      '0.0.0.0',
      'localhost',
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 100_000 }).map((n) => '9'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 100_000 }).map((n) => 'ü'.repeat(n)) },
);
/** Paths stay away from devices that never end (/dev/zero) or wait (/dev/stdin). */
const safePath = (v: string) => (/^\s*\/(dev|proc|sys)\//.test(v) && v.trim() !== '/dev/null' ? `.${v}` : v);

/** Secret values: the slot somewhere no error message has a reason to show (never in a URL's host). */
const secretValue: Record<(typeof SECRET_VARIABLES)[number], fc.Arbitrary<string>> = {
  VALHALLA_PSEUDONYM_SECRET: fc
    .tuple(fc.string({ maxLength: 40 }), pad)
    .map(([s, p]) => `${p}${s}${SLOT}${p}`),
  VALHALLA_PARTNER_CLIENT_SECRET: fc.string({ maxLength: 20 }).map((s) => `${s}${SLOT}`),
  VALHALLA_SLACK_WEBHOOK_URL: fc
    .tuple(
      fc.constantFrom(
        'https://hooks.slack.com/services/',
        'http://hooks.slack.com/services/',
        'HTTP://hooks.slack.com/services/',
        'http://127.0.0.1:9/',
        'ftp://hooks.slack.com/',
        'hooks.slack.com/services/',
        ' https://hooks.slack.com/services/',
        'https://hooks.slack.com/services/?token=',
        'http://hooks.slack.com/#',
        'javascript:',
        '',
      ),
      // No ':' after the slot: `secret:` alone would parse as a URL scheme, which the refusal names.
      fc.string({ maxLength: 10 }).filter((s) => !s.includes(':')),
    )
    .map(([prefix, s]) => `${prefix}${SLOT}${s}`),
  VALHALLA_SMTP_URL: fc
    .tuple(
      fc.constantFrom('smtp', 'smtps', 'SMTP', 'http', 'ftp', 'smtp+tls'),
      fc.constantFrom('ops', 'ops%40example', ''),
      fc.constantFrom('', '%2F', '@', ':', ' '),
      fc.constantFrom('mail.example:587', 'localhost', '127.0.0.1:25', '[::1]:25', 'bad host', ''),
    )
    .map(([scheme, user, extra, host]) => `${scheme}://${user}:${SLOT}${extra}@${host}`),
};

const padded = (arb: fc.Arbitrary<string | number>) =>
  fc.tuple(pad, arb, pad).map(([a, v, b]) => `${a}${v}${b}`);
/** Values near what each setting takes: in range, just out of it, and its boundaries. */
const PLAUSIBLE: Record<string, fc.Arbitrary<string>> = {
  VALHALLA_PHASE: padded(fc.constantFrom('3', '4', '2', '5')),
  VALHALLA_REAL_DATA_INGEST: fc.constantFrom('0', '1', ' 1', 'yes'),
  VALHALLA_DRY_RUN: fc.constantFrom('0', '1', '1 ', 'false'),
  VALHALLA_DISABLE_OUTBOUND: fc.constantFrom('0', '1', 'on'),
  VALHALLA_MAX_LEADS_PER_CYCLE: padded(fc.integer({ min: -2, max: 120 })),
  VALHALLA_MAX_ACTIONS_PER_CYCLE: padded(fc.integer({ min: -2, max: 12 })),
  VALHALLA_RATE_LIMIT: padded(
    fc.oneof(fc.integer({ min: -1, max: 7 }), fc.double({ min: -1, max: 6, noNaN: true })),
  ),
  VALHALLA_CYCLE_INTERVAL_S: padded(fc.integer({ min: -1, max: 90_000 })),
  VALHALLA_DEDUP_KEY: fc.constantFrom('email', 'external_id', 'EMAIL', 'phone'),
  VALHALLA_LOG_LEVEL: fc.constantFrom(
    'trace',
    'debug',
    'info',
    'warn',
    'error',
    'fatal',
    'silent',
    'verbose',
  ),
  VALHALLA_SERVER_PORT: padded(fc.oneof(fc.constant('off'), fc.integer({ min: -1, max: 70_000 }))),
  VALHALLA_METRICS_PORT: padded(fc.oneof(fc.constant('off'), fc.integer({ min: -1, max: 70_000 }))),
  VALHALLA_SERVER_HOST: fc.constantFrom(
    '127.0.0.1',
    '::1',
    'localhost',
    '0.0.0.0',
    '10.0.0.1',
    ' 127.0.0.1 ',
  ),
  VALHALLA_PARTNER_URL: fc.constantFrom(
    'https://partner.example',
    'http://127.0.0.1:9',
    'http://partner.example',
  ),
  VALHALLA_OPERATOR: fc.string({ unit: 'grapheme', maxLength: 20 }),
};

function valueFor(name: string): fc.Arbitrary<string> {
  if (name in secretValue) {
    return fc.oneof(
      { weight: 3, arbitrary: secretValue[name as keyof typeof secretValue] },
      { weight: 1, arbitrary: generic },
    );
  }
  const plausible = PLAUSIBLE[name];
  const any = PATH_VARIABLES.has(name) ? generic.map(safePath) : generic;
  return plausible ? fc.oneof({ weight: 3, arbitrary: plausible }, { weight: 2, arbitrary: any }) : any;
}

/** Many variables at once (nearly always refused), or a few (often accepted: the caps are then checked). */
const knownVariables: fc.Arbitrary<Env> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record(Object.fromEntries(KNOWN_VARIABLES.map((n) => [n, valueFor(n)])), {
      requiredKeys: [],
    }),
  },
  {
    weight: 4,
    arbitrary: fc
      .shuffledSubarray([...KNOWN_VARIABLES], { minLength: 1, maxLength: 3 })
      .chain((names) =>
        fc
          .tuple(...names.map(valueFor))
          .map((values) => Object.fromEntries(names.map((n, i) => [n, values[i]]))),
      ),
  },
);
/** An environment: known variables (values with SLOT where a secret sits), a misspelt one now and then. */
export const envArb = fc
  .record({
    known: knownVariables,
    misspelt: fc.oneof(
      { weight: 6, arbitrary: fc.constant(null) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'VALHALLA_MAX_LEAD_PER_CYCLE',
          'VALHALLA_PSEUDONYM_SECRT',
          'VALHALLA_X',
          'VALHALLA_',
        ),
      },
    ),
    misspeltValue: fc.string({ maxLength: 20 }).map((s) => `${s}${SLOT}`),
    unrelated: fc.dictionary(
      fc.constantFrom('PATH', 'HOME', 'NODE_ENV', 'valhalla_phase', 'VALHALLAPHASE'),
      generic,
    ),
  })
  .map(({ known, misspelt, misspeltValue, unrelated }) => {
    const env: Env = { ...unrelated, ...(known as Env) };
    if (misspelt !== null) env[misspelt] = misspeltValue;
    return env;
  });

export type Mutation =
  | { op: 'set'; key: string; value: unknown }
  | { op: 'delete'; key: string }
  | { op: 'extra'; key: string; value: unknown }
  | { op: 'stage'; index: number; field: string; value: unknown };

const policyValue = fc.oneof(
  fc.integer({ min: -1_000, max: 1_000_000 }),
  fc.double(),
  fc.constantFrom(0, -0, 1, 3, 4, 5, 5.000001, 4.9, 10, 11, 14, 14.5, 30, 31, 39, 40, 100, 101, 512, 513),
  fc.constantFrom(0.1, 0.1000001, 0.05, 10_000, 10_001, 5e7, 5e7 + 1, 1e308, 2 ** 53, 1e-300),
  fc.constantFrom('25', '', 'abc', '100', true, false, null, [], [1], [1, 2, 4], {}, { max: 5 }),
);
/** A value within the hard cap of a capped key (it may still break another rule, e.g. the ramp stages). */
const withinCap: fc.Arbitrary<Mutation> = fc
  .constantFrom(
    ...([
      ['leadsPerCycle', 10, 100, true],
      ['actionsPerCycle', 1, 10, true],
      ['dailyLeads', 1, 10_000, true],
      ['budgetExposure', 1, 50_000_000, false],
      ['maxLeadAgeDays', 0.5, 14, false],
      ['minLeadScore', 40, 100, true],
      ['apiTimeoutSeconds', 0.5, 30, false],
      ['maxRetries', 0, 3, true],
      ['errorRateTolerance', 0.001, 0.1, false],
      ['memoryPerProcessMb', 64, 512, true],
      ['maxConcurrentRequests', 1, 5, true],
      ['rateLimitPerSecond', 0.1, 5, false],
    ] as const),
  )
  .chain(([key, min, max, whole]) =>
    (whole ? fc.integer({ min, max }) : fc.double({ min, max, noNaN: true })).map(
      (value): Mutation => ({ op: 'set', key, value }),
    ),
  );
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: withinCap },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('set' as const),
      key: fc.constantFrom(...POLICY_KEYS),
      value: policyValue,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('delete' as const), key: fc.constantFrom(...POLICY_KEYS) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('extra' as const),
      key: fc.oneof(
        fc.constantFrom('leadsPerCyle', 'LeadsPerCycle', '__proto__', 'constructor', 'hardCaps', 'override'),
        fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !POLICY_KEYS.includes(k) && k.trim() !== ''),
      ),
      value: policyValue,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('stage' as const),
      index: fc.nat({ max: 4 }),
      field: fc.constantFrom('fromHour', 'leadsPerCycle', 'confirmEachCycle', 'extra'),
      value: policyValue,
    }),
  },
);

/** The shipped policy with the mutations applied, in order. */
export function mutate(mutations: Mutation[]): Record<string, unknown> {
  const doc = structuredClone(SHIPPED_POLICY);
  const own = (target: object, key: string, value: unknown) =>
    // defineProperty: a plain assignment to `__proto__` would set the prototype, not a key.
    Object.defineProperty(target, key, { value, enumerable: true, configurable: true, writable: true });
  for (const m of mutations) {
    if (m.op === 'delete') delete doc[m.key];
    else if (m.op === 'set' || m.op === 'extra') own(doc, m.key, m.value);
    else {
      const stages = Array.isArray(doc.rampStages) ? (doc.rampStages as unknown[]) : [];
      const stage = stages[m.index];
      if (stage !== null && typeof stage === 'object') own(stage, m.field, m.value);
    }
  }
  return doc;
}
