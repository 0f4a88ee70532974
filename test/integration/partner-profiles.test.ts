/**
 * Live delivery in each shipped partner profile, against a real HTTPS sandbox playing that profile:
 * the installation configured as an operator would (VALHALLA_PARTNER_PROFILE and the profile's
 * credential), the engine's client built from the configuration. Every outcome is reconciled with the
 * sandbox's own per-lead ledger: nothing lost, nothing accepted twice, refused leads quarantined with
 * the partner's reason masked, never sent again.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createPartnerClientFromConfig } from '../../src/app/partner.js';
import { loadConfig } from '../../src/config/index.js';
import { leadKey, payloadSha256, toProfileLead } from '../../src/engine/index.js';
import { readMode } from '../../src/guard/index.js';
import { SHIPPED_PROFILES_DIR } from '../../src/partner/index.js';
import { createDelivery, type Lead } from '../../src/store/index.js';
import { backends, dropTestSchemas } from '../support/backends.js';
import { closeLater, closeWorlds, emailOf, nameOf, type World, world } from '../support/live-world.js';
import { tempDir } from '../support/tmp.js';
import { SECOND } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
afterEach(closeWorlds);

const tags = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

function byTag(all: Map<string, Lead>, tag: string): Lead {
  const found = all.get(tag);
  if (!found) throw new Error(`no lead ${tag}`);
  return found;
}

/** Cycles until no lead is pending or in flight (at most `max`). */
async function drain(w: World, max = 6): Promise<void> {
  for (let i = 0; i < max; i++) {
    const leads = [...(await w.leads()).values()];
    if (!leads.some((l) => l.state === 'pending' || l.state === 'in_flight')) return;
    await w.cycle();
    w.clock.advance(5 * SECOND);
  }
  throw new Error(`leads still waiting after ${max} cycles`);
}

/** Send `leads` to the partner outside the installation (what another system sent it before). */
async function sentElsewhere(w: World, leads: Lead[]): Promise<void> {
  const client = createPartnerClientFromConfig(w.config, w.clock);
  closeLater(() => client.close());
  const outcome = await client.sendBatch({ batchKey: 'elsewhere-0001', leads: leads.map(toProfileLead) });
  expect(outcome.kind).toBe('accepted');
}

async function auditText(w: World): Promise<string> {
  const rows = await w.app.store.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
  return JSON.stringify(rows);
}

async function alertsText(w: World): Promise<string> {
  return JSON.stringify(await w.app.store.db.selectFrom('alerts').selectAll().execute());
}

describe.each(list)('partner profiles, live against the sandbox, on $name', (backend) => {
  it('crm-batch-contacts: a partial answer is reconciled with the ledger: refused leads quarantined with the reason masked, a duplicate exported as one, the rest exported once', async () => {
    const w = await world({ backend, profile: 'crm-batch-contacts', partner: 'app' });
    expect(w.config.partner.profile.profile.name).toBe('crm-batch-contacts');
    const names = tags('c', 8);
    await w.ingestAll(names.map((tag) => ({ tag })));
    const before = await w.leads();
    // c2 reached the CRM before (another system): the batch create answers it CONFLICT.
    await sentElsewhere(w, [byTag(before, 'c2')]);
    // The CRM refuses c5 and c7, with a reason that echoes c5's e-mail.
    w.sandbox.setFaults({
      refuseLeads: {
        leadKeys: [leadKey(byTag(before, 'c5')), leadKey(byTag(before, 'c7'))],
        reason: `Property values were not valid: ${emailOf('c5')} is not allowed`,
      },
    });

    const report = await w.cycle();
    expect(report).toMatchObject({
      claimed: 8,
      accepted: 6,
      duplicates: 1,
      refusedByPartner: 2,
      quarantined: 2,
      acceptedBatches: 1,
    });
    await drain(w);
    // Nothing more goes out: a refused lead is never resent as part of an accepted batch.
    const sentBefore = w.sandbox.stats().batches.received;
    w.clock.advance(600 * SECOND);
    await w.cycle();
    expect(w.sandbox.stats().batches.received).toBe(sentBefore);

    const after = await w.leads();
    const ledger = w.sandbox.leads();
    expect(Object.keys(ledger).sort()).toEqual(names.map((t) => leadKey(byTag(after, t))).sort());
    for (const tag of names) {
      const lead = byTag(after, tag);
      const record = ledger[leadKey(lead)]!;
      const refused = tag === 'c5' || tag === 'c7';
      // The ledger and the database tell one story, lead by lead.
      expect(lead.state, tag).toBe(refused ? 'quarantined' : 'exported');
      expect(record.acceptedAt !== null, tag).toBe(!refused);
      expect(record.refusals, tag).toHaveLength(refused ? 1 : 0);
      expect(record.received, tag).toBe(tag === 'c2' ? 2 : 1);
      expect(record.duplicates, tag).toBe(tag === 'c2' ? 1 : 0);
    }
    expect(byTag(after, 'c2').state_reason).toMatch(/^duplicate at partner/);
    expect(byTag(after, 'c1').state_reason).toBeNull();
    // c5's own e-mail is masked out of its reason; c7's reason holds another lead's e-mail: withheld.
    const c5 = byTag(after, 'c5').state_reason!;
    expect(c5).toBe('refused by the partner: Property values were not valid: *** is not allowed');
    const c7 = byTag(after, 'c7').state_reason!;
    expect(c7).toMatch(/^refused by the partner: \(the partner's text withheld/);
    expect(c7).not.toContain(emailOf('c5'));

    // One delivery, answered once; the chain names each lead's outcome by pseudonym only.
    const deliveries = await w.deliveries();
    expect(deliveries.map((d) => [d.state, d.attempts])).toEqual([['accepted', 1]]);
    const [accepted] = await w.audit('batch.accepted');
    const pseudonymOf = (tag: string) => w.app.pseudonymizer().pseudonym(byTag(after, tag).dedup_key);
    expect(accepted!.details.refused).toEqual([
      { lead: byTag(after, 'c5').id, pseudonym: pseudonymOf('c5') },
      { lead: byTag(after, 'c7').id, pseudonym: pseudonymOf('c7') },
    ]);
    expect(accepted!.details.duplicates).toEqual([
      { lead: byTag(after, 'c2').id, pseudonym: pseudonymOf('c2') },
    ]);
    for (const text of [await auditText(w), await alertsText(w)]) {
      for (const tag of names) {
        expect(text).not.toContain(emailOf(tag));
        expect(text).not.toContain(nameOf(tag));
      }
    }
    expect(await alertsText(w)).toContain(
      '2 of 8 lead(s) in an accepted batch quarantined: 2 refused by the partner',
    );
    // The error rate counts the answered, partly refused request as a failed one.
    const requests = await w.app.store.db
      .selectFrom('requests')
      .select(['endpoint', 'outcome', 'class', 'status'])
      .where('endpoint', '=', 'leads')
      .execute();
    expect(requests).toEqual([{ endpoint: 'leads', outcome: 'accepted', class: 'failure', status: 207 }]);
  });

  it('valhalla (the default): a lead the partner already holds comes back duplicate in the per-lead results and is exported as one; the rest exported once', async () => {
    const w = await world({ backend, partner: 'app' });
    expect(w.config.partner.profile.profile.name).toBe('valhalla');
    const names = tags('v', 4);
    await w.ingestAll(names.map((tag) => ({ tag })));
    await sentElsewhere(w, [byTag(await w.leads(), 'v3')]);
    expect(await w.cycle()).toMatchObject({ claimed: 4, accepted: 4, duplicates: 1, quarantined: 0 });
    const after = await w.leads();
    const ledger = w.sandbox.leads();
    for (const tag of names) {
      const lead = byTag(after, tag);
      expect(lead.state, tag).toBe('exported');
      expect(ledger[leadKey(lead)], tag).toMatchObject({
        received: tag === 'v3' ? 2 : 1,
        duplicates: tag === 'v3' ? 1 : 0,
        refusals: [],
      });
      expect(ledger[leadKey(lead)]!.acceptedAt, tag).not.toBeNull();
    }
    expect(byTag(after, 'v3').state_reason).toBe('duplicate at partner');
    const requests = await w.app.store.db.selectFrom('requests').select(['class']).execute();
    expect(requests).toEqual([{ class: 'success' }]);
  });

  it('crm-batch-contacts: a crash after the CRM took the batch, before it was recorded: recovery sends it again, the CRM answers CONFLICT for each, each lead exported once in its ledger', async () => {
    const w = await world({
      backend,
      profile: 'crm-batch-contacts',
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingestAll(tags('k', 3).map((tag) => ({ tag })));
    expect(await w.cycle()).toMatchObject({ claimed: 3, retrying: 3 });
    const [batch] = await w.deliveries();
    expect(batch).toMatchObject({ state: 'retry_wait', attempts: 1 });
    w.sandbox.setFaults({ rateLimit: null });
    // The crash: the retry was authorised, reached the CRM and was taken; the process died before recording.
    await w.app.store.db
      .updateTable('deliveries')
      .set({ state: 'sending', attempts: 2 })
      .where('id', '=', batch!.id)
      .execute();
    const leads = [...(await w.leads()).values()];
    const client = createPartnerClientFromConfig(w.config, w.clock);
    closeLater(() => client.close());
    const lost = await client.sendBatch({ batchKey: batch!.batch_key, leads: leads.map(toProfileLead) });
    expect(lost).toMatchObject({ kind: 'accepted', status: 200 });

    await w.restart();
    expect(await w.engine.recover()).toEqual({ resumed: 1, quarantined: 0 });
    w.clock.advance(61 * SECOND); // the 429's wait holds every request to the partner
    expect(await w.cycle()).toMatchObject({ accepted: 3, duplicates: 3, quarantined: 0 });
    const ledger = w.sandbox.leads();
    for (const lead of (await w.leads()).values()) {
      expect(lead.state).toBe('exported');
      expect(lead.state_reason).toMatch(/^duplicate at partner/);
      // Created once in the CRM; the resend found it there.
      expect(ledger[leadKey(lead)]).toMatchObject({ received: 2, duplicates: 1, refusals: [] });
      expect(ledger[leadKey(lead)]!.acceptedAt).not.toBeNull();
    }
    expect(await w.audit('recovery.resend')).toHaveLength(1);
  });

  it('crm-batch-contacts: an answer that leaves a lead out quarantines that lead as one the partner may hold; the others are exported', async () => {
    const w = await world({ backend, profile: 'crm-batch-contacts' });
    await w.ingestAll(tags('u', 3).map((tag) => ({ tag })));
    // The CRM's answer with its first result taken out, as a partner that forgets one would send it.
    w.afterSend = (outcome) =>
      outcome.kind === 'accepted' && outcome.leads
        ? {
            ...outcome,
            leads: outcome.leads.map((l, i) =>
              i === 0
                ? { ...l, outcome: 'unknown' as const, reason: 'the reply does not mention this lead' }
                : l,
            ),
          }
        : outcome;
    expect(await w.cycle()).toMatchObject({ accepted: 2, quarantined: 1 });
    const states = [...(await w.leads()).values()].map((l) => [l.state, l.state_reason]);
    expect(states[0]).toEqual([
      'quarantined',
      "the partner's answer did not say what became of this lead (the reply does not mention this lead); it may hold it: check with the partner before releasing it",
    ]);
    expect(states.slice(1).map(([state]) => state)).toEqual(['exported', 'exported']);
  });

  it('a profile that cannot write a lead (a required value it lacks) sets it aside before any batch: quarantined with the mapping and why, nothing sent', async () => {
    const dir = tempDir();
    const crm = JSON.parse(readFileSync(join(SHIPPED_PROFILES_DIR, 'crm-batch-contacts.json'), 'utf8'));
    crm.name = 'crm-needs-external-id';
    const at = crm.fields.findIndex((f: { to: string }) => f.to === 'external_id');
    crm.fields[at] = { to: 'external_id', from: 'external_id', type: 'string', required: true };
    writeFileSync(join(dir, 'crm.json'), JSON.stringify(crm));
    const w = await world({
      backend,
      profile: 'crm-batch-contacts',
      env: { VALHALLA_PARTNER_PROFILE: join(dir, 'crm.json') },
    });
    expect(w.config.partner.profile.profile.name).toBe('crm-needs-external-id');
    // The test world's leads carry no external id.
    await w.ingestAll(tags('s', 2).map((tag) => ({ tag })));
    expect(await w.cycle()).toMatchObject({ claimed: 0, setAside: 2, quarantined: 2 });
    expect(w.sandbox.stats().batches.received).toBe(0);
    for (const lead of (await w.leads()).values()) {
      expect(lead.state).toBe('quarantined');
      expect(lead.state_reason).toBe(
        `profile crm-needs-external-id cannot write this lead (fields[${at}] → "external_id": external_id is required here and the lead has none)`,
      );
    }
    const [entry] = await w.audit('leads.set_aside');
    expect(entry!.details).toMatchObject({ profile: 'crm-needs-external-id' });
    expect(entry!.details.leads).toHaveLength(2);
  });

  it('the profile switched with a batch queued under the old one that the new one cannot write: never attempted, it is dissolved and its leads set aside under the new profile; nothing is sent', async () => {
    const w = await world({ backend, partner: 'app' });
    await w.ingestAll(tags('q', 2).map((tag) => ({ tag })));
    // Claimed under the product's own contract, as a cycle does, and not sent yet.
    const leads = [...(await w.leads()).values()];
    const batchKey = 'queued-under-valhalla';
    await w.app.store.db.transaction().execute(async (trx) => {
      const cycle = await trx
        .insertInto('cycles')
        .values({ started_at: w.clock.now(), phase: 4, kind: 'live', ceiling: 2, limited_by: 'test' })
        .returning('id')
        .executeTakeFirstOrThrow();
      await createDelivery(
        trx,
        {
          batchKey,
          cycleId: cycle.id,
          kind: 'live',
          payloadSha256: payloadSha256(batchKey, leads),
          now: w.clock.now(),
        },
        leads.map((l) => ({ id: l.id, leadKey: leadKey(l), exposure: 0 })),
      );
    });
    expect((await w.deliveries()).map((d) => [d.state, d.attempts])).toEqual([['queued', 0]]);

    // The operator switches to a profile of its own that needs an external id (these leads have none).
    const dir = tempDir();
    const edited = JSON.parse(readFileSync(join(SHIPPED_PROFILES_DIR, 'valhalla.json'), 'utf8'));
    edited.name = 'valhalla-external-id';
    edited.fields[1].required = true;
    writeFileSync(join(dir, 'profile.json'), JSON.stringify(edited));
    w.config = loadConfig({
      cwd: w.dir,
      env: {
        ...(w.config.raw as Record<string, string>),
        VALHALLA_PARTNER_PROFILE: join(dir, 'profile.json'),
      },
    });
    await w.restart();
    w.clock.advance(60 * SECOND);
    expect(await w.cycle()).toMatchObject({ refused: 2, accepted: 0 });
    const [dissolved] = await w.audit('batch.refused');
    expect(String(dissolved!.details.reason)).toBe(
      'profile valhalla-external-id cannot write this batch (fields[1] → "external_id": external_id is required here and the lead has none; fields[1] → "external_id": external_id is required here and the lead has none)',
    );
    expect((await w.deliveries())[0]).toMatchObject({ state: 'refused', attempts: 0 });
    w.clock.advance(60 * SECOND);
    expect(await w.cycle()).toMatchObject({ setAside: 2, claimed: 0 });
    for (const lead of (await w.leads()).values()) expect(lead.state).toBe('quarantined');
    expect(w.sandbox.stats().batches.received).toBe(0);
  });

  it('the profile switched while a batch waits for its retry, to one that takes fewer leads a request: the batch the partner may hold is quarantined whole, never re-keyed or half-sent', async () => {
    const dir = tempDir();
    const file = join(dir, 'profile.json');
    const profile = JSON.parse(readFileSync(join(SHIPPED_PROFILES_DIR, 'valhalla.json'), 'utf8'));
    profile.name = 'valhalla-copy';
    writeFileSync(file, JSON.stringify(profile));
    const w = await world({
      backend,
      env: { VALHALLA_PARTNER_PROFILE: file, VALHALLA_MAX_ACTIONS_PER_CYCLE: '1' },
      sandbox: { faults: { failNext: 1 } },
    });
    await w.ingestAll(tags('m', 4).map((tag) => ({ tag })));
    expect(await w.cycle()).toMatchObject({ claimed: 4, retrying: 4 });
    expect((await w.deliveries()).map((d) => [d.state, d.attempts])).toEqual([['retry_wait', 1]]);
    // The operator edits the profile file: two leads a request.
    profile.batch.maxLeads = 2;
    writeFileSync(file, JSON.stringify(profile));
    await w.restart({});
    w.clock.advance(60 * SECOND);
    expect(await w.cycle()).toMatchObject({ refused: 4, accepted: 0 });
    expect((await w.deliveries()).map((d) => [d.state, d.attempts])).toEqual([['quarantined', 1]]);
    for (const lead of (await w.leads()).values()) {
      expect(lead.state).toBe('quarantined');
      expect(lead.state_reason).toMatch(
        /^refused before a retry \(profile valhalla-copy cannot write this batch \(batch: holds 4 leads, above the profile's maxLeads 2\)\); already attempted under batch \S+: check with the partner before releasing$/,
      );
    }
    // Only the first, failed request reached the partner.
    expect(w.sandbox.stats().batches.received).toBe(1);
  });

  it('crm-batch-contacts: three partly refused requests in a row roll the installation back (the error rate counts them as failed)', async () => {
    const dir = tempDir();
    const crm = JSON.parse(readFileSync(join(SHIPPED_PROFILES_DIR, 'crm-batch-contacts.json'), 'utf8'));
    crm.name = 'crm-small-batches';
    crm.batch.maxLeads = 2;
    writeFileSync(join(dir, 'crm.json'), JSON.stringify(crm));
    const w = await world({
      backend,
      profile: 'crm-batch-contacts',
      env: { VALHALLA_PARTNER_PROFILE: join(dir, 'crm.json') },
      sandbox: { faults: { refuseLeads: { every: 2, reason: 'Property values were not valid' } } },
    });
    await w.ingestAll(tags('r', 8).map((tag) => ({ tag })));
    const report = await w.cycle();
    expect(report.claimedBatches).toBe(4);
    expect(report.acceptedBatches).toBe(3);
    expect(report.halted).toMatch(/^rolled back: /);
    expect(w.sandbox.stats().batches.received).toBe(3);
    expect(await readMode(w.app.store.db)).toBe('rolled_back');
  });
});
