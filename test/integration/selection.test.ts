import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { LEAD_STATES, type LeadState } from '../../src/policy/index.js';
import {
  createIngestRun,
  insertLeadsSkippingDuplicates,
  type NewLead,
  openStore,
  selectEligible,
} from '../../src/store/index.js';
import { backends, dropTestSchemas } from '../support/backends.js';
import { testKey } from '../support/keys.js';
import { DAY, NOW } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);

const leadArb = fc.record({
  score: fc.integer({ min: 0, max: 100 }),
  ageMs: fc.integer({ min: 0, max: 30 * DAY }),
  state: fc.constantFrom<LeadState>(...LEAD_STATES),
  dryRun: fc.boolean(),
});

describe.each(list)('selecting eligible leads on $name', (backend) => {
  it('for any set of leads, chooses only pending, score ≥ 40, fresh ones, best score first, within the limit', async () => {
    const store = await openStore(backend.target());
    try {
      let round = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(leadArb, { maxLength: 60 }),
          fc.integer({ min: 0, max: 30 }),
          fc.boolean(),
          async (leads, limit, notDryRun) => {
            round++;
            const runId = await createIngestRun(store.db, {
              startedAt: NOW,
              source: `r${round}`,
              format: 'csv',
              operator: 't',
            });
            const rows: NewLead[] = leads.map((l, i) => ({
              dedup_key: testKey(`r${round}-${i}`),
              email_key: testKey(`r${round}-${i}`),
              external_id_key: null,
              external_id: null,
              name: 'N',
              email: `r${round}-${i}@example.test`,
              phone: null,
              company: null,
              score: l.score,
              source_ts: NOW - l.ageMs,
              value: null,
              state: l.state,
              state_reason: null,
              ingested_at: NOW,
              updated_at: NOW,
              exported_at: l.state === 'exported' ? NOW : null,
              run_id: runId,
              source_line: i + 1,
              dry_run_at: l.dryRun ? NOW : null,
            }));
            // The previous round's leads out of the way: their identities first (they point at them).
            await store.db
              .deleteFrom('lead_identities')
              .where('lead_id', 'in', (eb) =>
                eb.selectFrom('leads').select('id').where('exported_at', 'is', null),
              )
              .execute();
            await store.db.deleteFrom('leads').where('exported_at', 'is', null).execute();
            await store.db.updateTable('leads').set({ state: 'archived' }).execute();
            if (rows.length > 0)
              expect((await insertLeadsSkippingDuplicates(store, rows)).size).toBe(rows.length);
            const freshSince = NOW - 14 * DAY;
            const chosen = await selectEligible(store.db, { minScore: 40, freshSince, limit, notDryRun });
            const eligible = rows
              .filter(
                (r) =>
                  r.state === 'pending' &&
                  r.score >= 40 &&
                  r.source_ts >= freshSince &&
                  (!notDryRun || r.dry_run_at === null),
              )
              .sort((a, b) => b.score - a.score || a.source_ts - b.source_ts);
            expect(chosen.length).toBe(Math.min(limit, eligible.length));
            for (const lead of chosen) {
              expect(lead.state).toBe('pending');
              expect(lead.score).toBeGreaterThanOrEqual(40);
              expect(lead.source_ts).toBeGreaterThanOrEqual(freshSince);
              if (notDryRun) expect(lead.dry_run_at).toBeNull();
            }
            // Best score first: the chosen scores are exactly the top of the eligible ones.
            expect(chosen.map((l) => l.score)).toEqual(eligible.slice(0, chosen.length).map((l) => l.score));
          },
        ),
        { numRuns: 40 },
      );
    } finally {
      await store.close();
    }
  });
});
