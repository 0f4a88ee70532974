/**
 * The database's account of every lead checked against the sandbox partner's own ledger (README
 * "Delivery guarantee"): what the partner accepted, under which batch keys, and what the database
 * says it exported. Read from the SQLite file directly, with no process of the product running.
 */
import SqliteDatabase from 'better-sqlite3';
import type { LeadState } from '../src/policy/index.js';
import { PARTNER_CONFORMANCE_KEY_PREFIX } from '../src/rehearsal/partner-conformance.js';
import type { SandboxRecords, SandboxStats } from '../src/sandbox/index.js';

const NOT_FINAL: readonly LeadState[] = ['pending', 'in_flight'];

/** What the database holds at the end. */
export interface StoreFacts {
  leads: { id: number; external_id: string | null; state: LeadState; state_reason: string | null }[];
  /** Each lead's place in each live delivery (released ones too). */
  links: {
    batch_key: string;
    state: string;
    attempts: number;
    lead_id: number;
    lead_key: string;
    released: number;
  }[];
  /** Audit entries by action, for the recovery figures. */
  audit: Record<string, number>;
}

export function readStoreFacts(dbFile: string): StoreFacts {
  const db = new SqliteDatabase(dbFile, { readonly: true, fileMustExist: true });
  try {
    const leads = db
      .prepare('select id, external_id, state, state_reason from leads order by id')
      .all() as StoreFacts['leads'];
    const links = db
      .prepare(
        `select d.batch_key, d.state, d.attempts, dl.lead_id, dl.lead_key, dl.released
           from deliveries d join delivery_leads dl on dl.delivery_id = d.id
          where d.kind = 'live' and dl.live = 1 order by d.id, dl.lead_id`,
      )
      .all() as StoreFacts['links'];
    const audit = Object.fromEntries(
      (
        db
          .prepare(
            `select action, count(*) as n from audit_log
              where action in ('recovery.resend', 'recovery.quarantined', 'batch.quarantined', 'guard.refused')
              group by action`,
          )
          .all() as { action: string; n: number }[]
      ).map((r) => [r.action, r.n]),
    );
    return { leads, links, audit };
  } finally {
    db.close();
  }
}

/** The figures the sweep reports; the first five must be 0. */
export interface LedgerFigures {
  /** A lead left pending or in flight, or a lead key the partner accepted that the database does not know. */
  lost: number;
  /** A lead the partner holds under more than one batch key, or in more than one live delivery. */
  underTwoKeys: number;
  /** The partner accepted the lead; the database does not say exported. */
  acceptedNotExported: number;
  /** The database says exported; the partner never accepted the lead under that batch key. */
  exportedNotAccepted: number;
  quarantined: number;
  exported: number;
  byState: Record<string, number>;
  /** Quarantine reasons (their batch keys taken out) with their counts. */
  quarantineReasons: Record<string, number>;
  /** Samples of each kind of finding, for the report. */
  examples: string[];
}

export function compareWithPartner(
  facts: StoreFacts,
  partner: { records: SandboxRecords; stats: SandboxStats },
): LedgerFigures {
  const examples: string[] = [];
  const note = (text: string) => {
    if (examples.length < 12) examples.push(text);
  };
  const leadOfKey = new Map<string, number>();
  const liveOf = new Map<number, StoreFacts['links']>();
  for (const link of facts.links) {
    leadOfKey.set(link.lead_key, link.lead_id);
    if (link.released === 0) liveOf.set(link.lead_id, [...(liveOf.get(link.lead_id) ?? []), link]);
  }
  const byId = new Map(facts.leads.map((l) => [l.id, l]));
  // The go-live evidence's synthetic leads (`gates conformance --partner configured`, sent to this
  // same partner) are not the installation's: left out of the reconciliation.
  const held = Object.fromEntries(
    Object.entries(partner.records.leadBatches).filter(
      ([key]) => !key.startsWith(PARTNER_CONFORMANCE_KEY_PREFIX),
    ),
  );

  let lost = 0;
  const twice = new Set<string>();
  let acceptedNotExported = 0;
  for (const lead of facts.leads) {
    if (NOT_FINAL.includes(lead.state)) {
      lost++;
      note(`lead ${lead.id} (${lead.external_id ?? '-'}) left ${lead.state}`);
    }
    const live = liveOf.get(lead.id) ?? [];
    if (live.length > 1) {
      twice.add(live[0]!.lead_key);
      note(`lead ${lead.id} in ${live.length} live deliveries: ${live.map((l) => l.batch_key).join(', ')}`);
    }
  }
  for (const [leadKey, batchKeys] of Object.entries(held)) {
    if (batchKeys.length > 1) {
      twice.add(leadKey);
      note(
        `lead key ${leadKey} at the partner under ${batchKeys.length} batch keys: ${batchKeys.join(', ')}`,
      );
    }
    const id = leadOfKey.get(leadKey);
    const lead = id === undefined ? undefined : byId.get(id);
    if (lead === undefined) {
      lost++;
      note(`lead key ${leadKey} accepted by the partner, unknown to the database`);
    } else if (lead.state !== 'exported') {
      acceptedNotExported++;
      note(
        `lead ${lead.id} accepted by the partner (batch ${batchKeys.join(', ')}), ${lead.state} in the database: ${lead.state_reason ?? ''}`,
      );
    }
  }
  let exportedNotAccepted = 0;
  const byState: Record<string, number> = {};
  const quarantineReasons: Record<string, number> = {};
  for (const lead of facts.leads) {
    byState[lead.state] = (byState[lead.state] ?? 0) + 1;
    if (lead.state === 'quarantined') {
      const reason = (lead.state_reason ?? '(no reason)').replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<batch>');
      quarantineReasons[reason] = (quarantineReasons[reason] ?? 0) + 1;
    }
    if (lead.state !== 'exported') continue;
    const live = liveOf.get(lead.id) ?? [];
    const carriers = live.length === 1 ? held[live[0]!.lead_key] : undefined;
    if (live.length !== 1 || live[0]!.state !== 'accepted' || carriers?.[0] !== live[0]!.batch_key) {
      exportedNotAccepted++;
      note(`lead ${lead.id} exported in the database, not accepted by the partner under its batch key`);
    }
  }
  return {
    lost,
    underTwoKeys: twice.size,
    acceptedNotExported,
    exportedNotAccepted,
    quarantined: byState.quarantined ?? 0,
    exported: byState.exported ?? 0,
    byState,
    quarantineReasons,
    examples,
  };
}

/** The most request starts in any window of `windowMs` (starts in any order). */
export function busiestWindow(starts: readonly number[], windowMs: number): number {
  const sorted = [...starts].sort((a, b) => a - b);
  let best = 0;
  let j = 0;
  for (let i = 0; i < sorted.length; i++) {
    while (sorted[j]! < sorted[i]! - windowMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}
