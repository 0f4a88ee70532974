import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { LEAD_FIELDS, validateLead } from '../../src/ingest/lead-schema.js';
import { initialLeadState } from '../../src/policy/index.js';
import {
  DEFAULT_SHARES,
  type GeneratedKind,
  type GeneratedRow,
  generateLeads,
  writeGeneratedLeads,
} from '../../src/synthetic/index.js';
import { DAY, NOW } from '../support/world.js';

const RULES = { minLeadScore: 40, maxLeadAgeDays: 14 };

function take(count: number, seed: number, now = NOW): GeneratedRow[] {
  return [...generateLeads({ count, seed, now })];
}

async function written(
  options: Parameters<typeof writeGeneratedLeads>[1],
): Promise<{ text: string; tally: Record<GeneratedKind, number> }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const tally = await writeGeneratedLeads(out, options);
  out.end();
  return { text: Buffer.concat(chunks).toString('utf8'), tally };
}

describe('generateLeads', () => {
  it('gives identical output for the same seed and now', async () => {
    expect(take(2_000, 42)).toEqual(take(2_000, 42));
    const a = await written({ count: 1_500, seed: 7, now: NOW, format: 'csv' });
    const b = await written({ count: 1_500, seed: 7, now: NOW, format: 'csv' });
    expect(a.text).toBe(b.text);
    expect(a.tally).toEqual(b.tally);
    const j1 = await written({ count: 300, seed: 7, now: NOW, format: 'jsonl' });
    const j2 = await written({ count: 300, seed: 7, now: NOW, format: 'jsonl' });
    expect(j1.text).toBe(j2.text);
  });

  it('differs for a different seed, and places timestamps relative to now', () => {
    const a = take(200, 1);
    const b = take(200, 2);
    expect(a).not.toEqual(b);
    const differing = a.filter((row, i) => row.fields.email !== b[i]!.fields.email).length;
    expect(differing).toBeGreaterThan(190);
    const later = take(200, 1, NOW + DAY);
    expect(later.map((r) => r.fields.name)).toEqual(a.map((r) => r.fields.name));
    const shifted = later.map(
      (r, i) =>
        Date.parse(String(r.fields.source_timestamp)) - Date.parse(String(a[i]!.fields.source_timestamp)),
    );
    // Same seed, now one day later: every timestamp moves by a day, except invalid ones that are not dates.
    expect(shifted.filter((d) => d === DAY).length).toBeGreaterThan(190);
  });

  it('makes each kind of row in the shares of DEFAULT_SHARES (20,000 rows)', () => {
    const count = 20_000;
    const tally: Record<GeneratedKind, number> = {
      fresh: 0,
      stale: 0,
      low_score: 0,
      duplicate: 0,
      invalid: 0,
    };
    for (const row of generateLeads({ count, seed: 2026, now: NOW })) tally[row.kind]++;
    const share = (k: GeneratedKind) => tally[k] / count;
    // Binomial standard deviations here are ≤ 0.0021; 0.008 is about 4 of them.
    expect(Math.abs(share('stale') - DEFAULT_SHARES.stale)).toBeLessThan(0.008);
    expect(Math.abs(share('low_score') - DEFAULT_SHARES.lowScore)).toBeLessThan(0.008);
    expect(Math.abs(share('duplicate') - DEFAULT_SHARES.duplicate)).toBeLessThan(0.008);
    expect(Math.abs(share('invalid') - DEFAULT_SHARES.invalid)).toBeLessThan(0.008);
    const rest =
      1 - DEFAULT_SHARES.stale - DEFAULT_SHARES.lowScore - DEFAULT_SHARES.duplicate - DEFAULT_SHARES.invalid;
    expect(Math.abs(share('fresh') - rest)).toBeLessThan(0.012);
  });

  it('honours custom shares', () => {
    const tally: Record<GeneratedKind, number> = {
      fresh: 0,
      stale: 0,
      low_score: 0,
      duplicate: 0,
      invalid: 0,
    };
    const shares = { stale: 0.3, lowScore: 0, duplicate: 0, invalid: 0.2 };
    for (const row of generateLeads({ count: 5_000, seed: 5, now: NOW, shares })) tally[row.kind]++;
    expect(tally.low_score).toBe(0);
    expect(tally.duplicate).toBe(0);
    expect(Math.abs(tally.stale / 5_000 - 0.3)).toBeLessThan(0.03);
    expect(Math.abs(tally.invalid / 5_000 - 0.2)).toBeLessThan(0.03);
  });

  it('makes every row what its kind says: validation and the initial state agree with the kind', () => {
    const seenEmails = new Set<string>();
    const counts: Record<string, number> = {};
    for (const row of generateLeads({ count: 20_000, seed: 99, now: NOW })) {
      const result = validateLead(row.fields, { now: NOW, requireExternalId: true });
      let verdict: string;
      if (!result.ok) verdict = 'invalid';
      else {
        const state = initialLeadState(result.lead, RULES, NOW).state;
        verdict =
          row.kind === 'duplicate'
            ? seenEmails.has(result.lead.email)
              ? 'duplicate'
              : `duplicate-not-seen:${state}`
            : state;
        if (row.kind !== 'duplicate') {
          // Every identity that is not a duplicate is new: no accidental duplicates.
          expect(seenEmails.has(result.lead.email)).toBe(false);
          seenEmails.add(result.lead.email);
        }
      }
      const expected = {
        fresh: 'pending',
        stale: 'expired',
        low_score: 'below_threshold',
        duplicate: 'duplicate',
        invalid: 'invalid',
      }[row.kind];
      const key = `${row.kind}->${verdict}`;
      counts[key] = (counts[key] ?? 0) + 1;
      if (verdict !== expected && row.kind !== 'duplicate')
        throw new Error(`row of kind ${row.kind} came out ${verdict}: ${JSON.stringify(row.fields)}`);
    }
    // A duplicate normally repeats an earlier valid identity; the only exception is a copy of a row
    // that was spoiled (invalid): its identity was never accepted, so the copy is the first.
    const orphanDuplicates = Object.entries(counts)
      .filter(([k]) => k.startsWith('duplicate->duplicate-not-seen'))
      .reduce((a, [, n]) => a + n, 0);
    expect(counts['duplicate->duplicate']).toBeGreaterThan(400);
    expect(orphanDuplicates).toBeLessThan(counts['duplicate->duplicate']! * 0.1);
  });

  it('spells duplicates with different case and spacing, and writes a CSV header and JSONL objects', async () => {
    const rows = take(3_000, 11);
    const dup = rows.find((r) => r.kind === 'duplicate')!;
    expect(String(dup.fields.email)).toMatch(/^ {2}\S+ $/);
    expect(String(dup.fields.email)).toBe(String(dup.fields.email).toUpperCase());

    const csv = await written({ count: 50, seed: 3, now: NOW, format: 'csv' });
    const lines = csv.text.trimEnd().split('\n');
    expect(lines[0]).toBe(LEAD_FIELDS.join(','));
    expect(Object.values(csv.tally).reduce((a, b) => a + b, 0)).toBe(50);

    const jsonl = await written({ count: 50, seed: 3, now: NOW, format: 'jsonl' });
    const objects = jsonl.text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objects).toHaveLength(50);
    expect(objects.map((o) => o.email)).toEqual(take(50, 3).map((r) => r.fields.email));
    expect(jsonl.tally).toEqual(csv.tally);
  });
});
