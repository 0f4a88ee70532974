import type { Writable } from 'node:stream';
import { en, Faker } from '@faker-js/faker';
import { stringify } from 'csv-stringify/sync';
import type { SourceFormat } from '../ingest/index.js';
import { LEAD_FIELDS } from '../ingest/index.js';
import { SYNTHETIC_ID_PREFIX } from '../policy/index.js';

export interface GenerateOptions {
  count: number;
  seed: number;
  /** Timestamps are placed relative to this instant, so the same seed and `now` give the same file. */
  now: number;
  format: SourceFormat;
  /** Shares of rows made deliberately ineligible or bad; the rest are fresh, valid, score ≥ 40. */
  shares?: Partial<GeneratedShares>;
  /**
   * The external ids' prefix: the reserved `SYNTHETIC-` (the mark) unless given. Only `valhalla
   * simulate` gives another, for leads that live in its private database and reach only its
   * in-process sandbox partner (its Phase 4 takes real data only).
   */
  idPrefix?: string;
}

export interface GeneratedShares {
  stale: number;
  lowScore: number;
  duplicate: number;
  invalid: number;
}

export const DEFAULT_SHARES: GeneratedShares = { stale: 0.05, lowScore: 0.1, duplicate: 0.03, invalid: 0.02 };

export type GeneratedKind = 'fresh' | 'stale' | 'low_score' | 'duplicate' | 'invalid';

export interface GeneratedRow {
  kind: GeneratedKind;
  fields: Record<(typeof LEAD_FIELDS)[number], string | number | null>;
}

const DAY_MS = 86_400_000;
/** How many earlier identities a duplicate may repeat: keeps memory flat for any count. */
const RECENT_IDENTITIES = 1_000;

/** Realistic, reproducible leads with a share of stale, low-score, duplicate and invalid rows. */
export function* generateLeads(options: Omit<GenerateOptions, 'format'>): Generator<GeneratedRow> {
  const shares = { ...DEFAULT_SHARES, ...options.shares };
  const faker = new Faker({ locale: [en] });
  faker.seed(options.seed);
  const recent: { email: string; externalId: string }[] = [];
  // Cumulative upper edges of each kind's band of [0, 1); the rest are fresh.
  const bands = {
    invalid: shares.invalid,
    duplicate: shares.invalid + shares.duplicate,
    stale: shares.invalid + shares.duplicate + shares.stale,
    lowScore: shares.invalid + shares.duplicate + shares.stale + shares.lowScore,
  };
  for (let i = 0; i < options.count; i++) {
    const roll = faker.number.float({ min: 0, max: 1 });
    let kind: GeneratedKind = 'fresh';
    if (roll < bands.invalid) kind = 'invalid';
    else if (roll < bands.duplicate && recent.length > 0) kind = 'duplicate';
    else if (roll < bands.stale) kind = 'stale';
    else if (roll < bands.lowScore) kind = 'low_score';

    const first = faker.person.firstName();
    const last = faker.person.lastName();
    const identity =
      kind === 'duplicate'
        ? recent[faker.number.int({ min: 0, max: recent.length - 1 })]!
        : {
            email: faker.internet.email({ firstName: first, lastName: `${last}${i}` }).toLowerCase(),
            // The reserved prefix marks the lead synthetic for good: ingest stores the mark with it.
            externalId: `${options.idPrefix ?? SYNTHETIC_ID_PREFIX}${options.seed}-${i}`,
          };
    if (kind !== 'duplicate') {
      if (recent.length < RECENT_IDENTITIES) recent.push(identity);
      else recent[i % RECENT_IDENTITIES] = identity;
    }
    const ageMs =
      kind === 'stale'
        ? faker.number.int({ min: 15 * DAY_MS, max: 60 * DAY_MS })
        : faker.number.int({ min: 5 * 60_000, max: 13 * DAY_MS });
    const fields: GeneratedRow['fields'] = {
      external_id: identity.externalId,
      name: `${first} ${last}`,
      // A duplicate differs in case and spacing only: normalisation must still catch it.
      email: kind === 'duplicate' ? `  ${identity.email.toUpperCase()} ` : identity.email,
      phone: faker.helpers.arrayElement([
        faker.phone.number({ style: 'international' }),
        faker.phone.number({ style: 'national' }),
        '',
      ]),
      company: faker.company.name(),
      score:
        kind === 'low_score'
          ? faker.number.int({ min: 0, max: 39 })
          : faker.number.int({ min: 40, max: 100 }),
      source_timestamp: new Date(options.now - ageMs).toISOString(),
      value: faker.helpers.maybe(() => faker.number.int({ min: 5, max: 150 }), { probability: 0.8 }) ?? null,
    };
    if (kind === 'invalid') spoil(faker, fields, options.now);
    yield { kind, fields };
  }
}

function spoil(faker: Faker, fields: GeneratedRow['fields'], now: number): void {
  switch (faker.number.int({ min: 0, max: 5 })) {
    case 0:
      fields.email = String(fields.email).replace('@', ' at ');
      break;
    case 1:
      fields.score = faker.helpers.arrayElement([101, 150, -5, 'high']);
      break;
    case 2:
      fields.name = '';
      break;
    case 3:
      fields.source_timestamp = new Date(now + 3 * DAY_MS).toISOString();
      break;
    case 4:
      fields.phone = 'call me maybe';
      break;
    default:
      fields.source_timestamp = 'last tuesday';
  }
}

/** Write generated leads as CSV (with a header) or JSONL, honouring back-pressure. */
export async function writeGeneratedLeads(
  out: Writable,
  options: GenerateOptions,
): Promise<Record<GeneratedKind, number>> {
  const tally: Record<GeneratedKind, number> = { fresh: 0, stale: 0, low_score: 0, duplicate: 0, invalid: 0 };
  let buffer = options.format === 'csv' ? stringify([LEAD_FIELDS as unknown as string[]]) : '';
  const flush = async () => {
    if (buffer === '') return;
    const ok = out.write(buffer);
    buffer = '';
    if (!ok) await new Promise((resolve) => out.once('drain', resolve));
  };
  let batch: GeneratedRow['fields'][] = [];
  for (const row of generateLeads(options)) {
    tally[row.kind]++;
    batch.push(row.fields);
    if (batch.length === 1_000) {
      buffer += format(batch, options.format);
      batch = [];
      await flush();
    }
  }
  buffer += format(batch, options.format);
  await flush();
  return tally;
}

function format(rows: GeneratedRow['fields'][], kind: SourceFormat): string {
  if (rows.length === 0) return '';
  if (kind === 'jsonl') return rows.map((r) => `${JSON.stringify(r)}\n`).join('');
  return stringify(rows.map((r) => LEAD_FIELDS.map((f) => r[f] ?? '')));
}
