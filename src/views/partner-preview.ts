// `valhalla partner preview`: the request a partner profile would make of the leads the next cycle
// picks, masked unless an admin's reveal was verified by the caller. A reveal is audited in the
// transaction that reads the leads; a masked preview writes nothing.
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { cycleSendsLive, eligibleFor, leadKey, toProfileLead } from '../engine/index.js';
import { readMode } from '../guard/index.js';
import { urlBelow } from '../outbound/index.js';
import {
  buildPartnerRequest,
  type FieldMapping,
  type PartnerProfile,
  type ProfileLead,
  profileSha256,
  type RequestProblem,
} from '../partner/index.js';
import {
  maskAttributes,
  maskCompany,
  maskEmail,
  maskExternalId,
  maskName,
  maskPhone,
  type Pseudonymizer,
} from '../pii/index.js';
import { freshnessCutoff } from '../policy/index.js';
import {
  type Lead,
  lockAuditChain,
  readConsistently,
  type Store,
  type StoreTransaction,
  selectEligible,
} from '../store/index.js';

/** A preview shows at most this many leads: enough to check a mapping, not an export. */
export const PREVIEW_MAX_LEADS = 10;
/** The batch key shown in the idempotency header: a placeholder, never a real batch's key. */
export const PREVIEW_BATCH_KEY = 'preview';

export interface PartnerPreviewDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly config: Config;
  pseudonymizer(): Pseudonymizer;
}

export interface PartnerPreviewOptions {
  profile: PartnerProfile;
  /** The profile's file, as shown. */
  profileFile: string;
  /** 1 to PREVIEW_MAX_LEADS (refused above, never clamped). */
  limit: number;
  /**
   * Unmasked values, for the holder of an admin API token the caller has verified: audited
   * (`partner.preview_revealed`) in the transaction that reads the leads, under the operator's name.
   */
  reveal?: { tokenName: string };
}

/** One lead the next cycle would pick, in the cycle's selection order. */
export interface PreviewLead {
  id: number;
  pseudonym: string;
  leadKey: string;
  score: number;
  sourceTimestamp: string;
  /** In the request, or set aside because the profile cannot write it (see `problems`). */
  inRequest: boolean;
}

/** Why a lead cannot be written: its id, the mapping and why; never a value. */
export interface PreviewProblem {
  leadId: number | null;
  pseudonym: string | null;
  where: string;
  problem: string;
}

export interface PreviewHeader {
  name: string;
  value: string;
}

export interface PreviewRequest {
  method: string;
  /** The configured partner base URL joined to the path, or null when none is configured. */
  url: string | null;
  path: string;
  /** The content type, the auth header (its source, never a secret) and the idempotency header. */
  headers: PreviewHeader[];
  body: unknown;
}

export interface PartnerPreview {
  profile: { name: string; file: string; sha256: string };
  /** Whose leads: a live cycle's (real leads not yet sent) or a dry run's (not dry-run before). */
  selection: 'live' | 'dry_run';
  masked: boolean;
  leads: PreviewLead[];
  problems: PreviewProblem[];
  /** Null when no lead was picked, or none can be written. */
  request: PreviewRequest | null;
  /** The lead ids in the body's order: the engine sends a batch's leads in id order. */
  bodyOrder: number[];
}

/** The preview of the request `profile` would make of the next cycle's leads. */
export async function previewPartnerRequest(
  deps: PartnerPreviewDeps,
  options: PartnerPreviewOptions,
): Promise<PartnerPreview> {
  const { store, config, clock, audit } = deps;
  const { profile, reveal } = options;
  const pseudonymizer = deps.pseudonymizer();
  const sha256 = profileSha256(profile);
  const now = clock.now();

  const pick = async (trx: StoreTransaction) => {
    // The engine's own rules: whether the next cycle sends, and which leads it may pick.
    const live = cycleSendsLive(config, await readMode(trx));
    const cutoff = freshnessCutoff(config.policy.maxLeadAgeDays, now);
    const leads = await selectEligible(trx, {
      ...eligibleFor(config.policy, live, cutoff),
      limit: options.limit,
    });
    return { live, leads };
  };

  const picked =
    reveal === undefined
      ? await readConsistently(store, pick)
      : await store.db.transaction().execute(async (trx) => {
          // The write lock first (SQLite): the audit entry commits with the read it records.
          await lockAuditChain(trx, store.dialect);
          const chosen = await pick(trx);
          await audit.append(trx, {
            actor: config.operator,
            action: 'partner.preview_revealed',
            details: {
              tokenName: reveal.tokenName,
              profile: profile.name,
              profileSha256: sha256,
              leads: chosen.leads.map((l) => ({ id: l.id, pseudonym: pseudonymizer.pseudonym(l.dedup_key) })),
            },
          });
          return chosen;
        });

  const masked = reveal === undefined;
  const asProfileLead = (lead: Lead): ProfileLead => {
    const real = toProfileLead(lead);
    if (!masked) return real;
    // Masked before the request is built: the real values never enter the body. A null stays null,
    // so required and ifNull act as they would on the real lead. An attribute the profile declares
    // not personal shows as it is; a personal one (or one it does not declare) is masked.
    return {
      ...real,
      external_id: real.external_id === null ? null : maskExternalId(real.external_id),
      name: maskName(real.name),
      email: maskEmail(real.email),
      phone: real.phone === null ? null : maskPhone(real.phone),
      company: real.company === null ? null : maskCompany(real.company),
      attributes: maskAttributes(lead.attributes, profile.attributes ?? []),
    };
  };
  // A masked personal attribute is text whatever its declared type: the masked request writes it as such.
  const writing = masked ? withPersonalAttributesAsText(profile) : profile;

  const pseudonymOf = new Map(picked.leads.map((l) => [l.id, pseudonymizer.pseudonym(l.dedup_key)]));
  const problems: PreviewProblem[] = [];
  const writable: { lead: Lead; item: ProfileLead }[] = [];
  for (const lead of picked.leads) {
    const item = asProfileLead(lead);
    // Each lead alone first: a lead the profile cannot write is named and set aside, as the caller
    // of buildPartnerRequest must, and the others are still previewed.
    const alone = buildPartnerRequest(writing, [item], PREVIEW_BATCH_KEY);
    if (alone.ok) writable.push({ lead, item });
    else {
      for (const p of alone.problems) problems.push(leadProblem(lead, pseudonymOf.get(lead.id) ?? null, p));
    }
  }
  // The engine sends a batch's leads in id order; a profile's maxLeads bounds one request.
  const inBody = [...writable].sort((a, b) => a.lead.id - b.lead.id).slice(0, profile.batch.maxLeads);
  if (writable.length > inBody.length) {
    problems.push({
      leadId: null,
      pseudonym: null,
      where: 'batch.maxLeads',
      problem: `the profile sends at most ${profile.batch.maxLeads} leads a request: the first ${inBody.length} (by id) are shown`,
    });
  }
  const inRequest = new Set(inBody.map((w) => w.lead.id));
  let request: PreviewRequest | null = null;
  if (inBody.length > 0) {
    const built = buildPartnerRequest(
      writing,
      inBody.map((w) => w.item),
      PREVIEW_BATCH_KEY,
    );
    if (built.ok) {
      const { method, path, headers, body } = built.request;
      request = {
        method,
        url: config.partner.url === null ? null : urlBelow(new URL(config.partner.url), path).href,
        path,
        headers: [
          { name: 'Content-Type', value: 'application/json' },
          authHeader(profile),
          ...Object.entries(headers).map(([name, value]) => ({ name, value })),
        ],
        body,
      };
    } else {
      for (const p of built.problems) problems.push({ leadId: null, pseudonym: null, ...p });
    }
  }

  return {
    profile: { name: profile.name, file: options.profileFile, sha256 },
    selection: picked.live ? 'live' : 'dry_run',
    masked,
    leads: picked.leads.map((lead) => ({
      id: lead.id,
      pseudonym: pseudonymOf.get(lead.id) ?? '',
      leadKey: leadKey(lead),
      score: lead.score,
      sourceTimestamp: new Date(lead.source_ts).toISOString(),
      inRequest: inRequest.has(lead.id),
    })),
    problems,
    request,
    bodyOrder: request === null ? [] : inBody.map((w) => w.lead.id),
  };
}

function leadProblem(lead: Lead, pseudonym: string | null, p: RequestProblem): PreviewProblem {
  return { leadId: lead.id, pseudonym, where: p.where, problem: p.problem };
}

/**
 * The profile a masked preview writes with: each personal attribute declared as text without a length
 * limit, and each mapping that reads one writing text, so the masked value (`***`) takes its place
 * whatever the attribute's type. Everything else as the profile says; the profile's hash is the real one's.
 */
function withPersonalAttributesAsText(profile: PartnerProfile): PartnerProfile {
  const personal = new Set((profile.attributes ?? []).filter((a) => a.pii).map((a) => a.name));
  if (personal.size === 0) return profile;
  const readsPersonal = (from: FieldMapping['from']) =>
    typeof from === 'string' &&
    from.startsWith('attributes.') &&
    personal.has(from.slice('attributes.'.length));
  return {
    ...profile,
    attributes: (profile.attributes ?? []).map((a) => {
      if (!a.pii) return a;
      const { maxLength: _unlimited, ...text } = a;
      return { ...text, type: 'string' as const };
    }),
    fields: profile.fields.map((f) => (readsPersonal(f.from) ? { ...f, type: 'string' as const } : f)),
  };
}

/** The auth header as the client would add it: where its value comes from, never the value. */
function authHeader(profile: PartnerProfile): PreviewHeader {
  switch (profile.auth.kind) {
    case 'oauth2_client_credentials':
      return {
        name: 'Authorization',
        value:
          'Bearer <from VALHALLA_PARTNER_TOKEN_URL, with VALHALLA_PARTNER_CLIENT_ID and VALHALLA_PARTNER_CLIENT_SECRET>',
      };
    case 'bearer':
      return { name: 'Authorization', value: 'Bearer <from the environment>' };
    case 'api_key':
      return { name: profile.auth.header, value: '<from the environment>' };
  }
}
