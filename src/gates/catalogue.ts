import type { AuditAction } from '../policy/index.js';
import type { SignerRole } from '../store/index.js';

/**
 * The nine gates of the policy's §1, item by item. An item is either *verified* (the system checks
 * evidence it can measure: configuration, the audit chain's records of drills, tests and runs, the
 * sign-offs) or *attested* (a registered signer of the named role signs it). The ids are stable:
 * attestations name them.
 */
export type ItemCheck =
  /** A registered signer of `role` signs the item (an attestation against the current policy hash). */
  | { kind: 'attested'; role: SignerRole }
  /** The system checks it; `evidence` names the check (see evaluate.ts). */
  | { kind: 'verified'; evidence: EvidenceCheck };

export type EvidenceCheck =
  | 'audit_chain'
  | 'conformance:endpoint'
  | 'conformance:token_refresh'
  | 'conformance:failure_handling'
  | 'conformance:retries'
  | 'conformance:total_failure'
  | 'conformance:dedup'
  | 'limit:leads_per_cycle'
  | 'limit:actions_per_cycle'
  | 'limit:rate'
  | 'limit:memory'
  | 'alerts:slack'
  | 'alerts:email'
  | 'dashboard:live_flow'
  | 'limit:rollback_threshold'
  | 'limit:daily_leads'
  | 'limit:budget'
  | 'drill:time'
  | 'drill:clean'
  | 'drill:tested'
  | 'signoff:ceo'
  | 'signoff:cfo'
  | 'signoff:general_counsel'
  | 'signoff:risk_officer'
  | 'signoff:head_of_operations'
  | 'stability';

export interface GateItem {
  /** e.g. `3.gdpr_checklist`. */
  id: string;
  text: string;
  check: ItemCheck;
}

export interface Gate {
  gate: number;
  title: string;
  items: readonly GateItem[];
}

const attested = (role: SignerRole): ItemCheck => ({ kind: 'attested', role });
const verified = (evidence: EvidenceCheck): ItemCheck => ({ kind: 'verified', evidence });

export const GATES: readonly Gate[] = [
  {
    gate: 1,
    title: 'Guard module removal authorization',
    items: [
      {
        id: '1.legal_signoff',
        text: 'Legal/Compliance has signed off on removing the Phase 3 safety guard',
        check: attested('general_counsel'),
      },
      {
        id: '1.audit_trail',
        text: 'Audit trail documented with approval date and signer (the chain verifies)',
        check: verified('audit_chain'),
      },
      {
        id: '1.rollback_procedure',
        text: 'Rollback procedure documented',
        check: attested('head_of_operations'),
      },
    ],
  },
  {
    gate: 2,
    title: 'Real outbound integration tested',
    items: [
      {
        id: '2.endpoint',
        text: 'Lead export API endpoint verified (POST /api/leads)',
        check: verified('conformance:endpoint'),
      },
      {
        id: '2.token_refresh',
        text: 'Authentication token refreshing tested (no expiry during batch)',
        check: verified('conformance:token_refresh'),
      },
      {
        id: '2.failure_handling',
        text: 'Error handling for failed outbound requests confirmed',
        check: verified('conformance:failure_handling'),
      },
      {
        id: '2.retries',
        text: 'Retry logic for transient failures validated',
        check: verified('conformance:retries'),
      },
      {
        id: '2.total_failure',
        text: '100% failure case (network down): nothing lost, outbound stops',
        check: verified('conformance:total_failure'),
      },
    ],
  },
  {
    gate: 3,
    title: 'Institutional data safety',
    items: [
      {
        id: '3.pii_masking_reviewed',
        text: 'PII masking rules reviewed',
        check: attested('general_counsel'),
      },
      {
        id: '3.gdpr_checklist',
        text: 'GDPR/data privacy checklist signed',
        check: attested('general_counsel'),
      },
      {
        id: '3.dedup_tested',
        text: 'Lead deduplication tested (no duplicate sends to external system)',
        check: verified('conformance:dedup'),
      },
      {
        id: '3.retention_policy',
        text: 'Data retention policy documented',
        check: attested('general_counsel'),
      },
    ],
  },
  {
    gate: 4,
    title: 'Load limits enforced',
    items: [
      {
        id: '4.leads_per_cycle',
        text: 'Leads per cycle set within the hard maximum (default 25, max 100)',
        check: verified('limit:leads_per_cycle'),
      },
      {
        id: '4.actions_per_cycle',
        text: 'Actions per cycle set within the hard maximum (Phase 4: 5, max 10)',
        check: verified('limit:actions_per_cycle'),
      },
      { id: '4.rate_limit', text: 'Rate limiting: at most 5 requests/second', check: verified('limit:rate') },
      {
        id: '4.memory_limit',
        text: 'Memory limit: the worker capped at 512 MB, in force',
        check: verified('limit:memory'),
      },
    ],
  },
  {
    gate: 5,
    title: 'Monitoring & alerting active',
    items: [
      {
        id: '5.slack',
        text: 'Slack webhook configured, a test alert delivered recently',
        check: verified('alerts:slack'),
      },
      {
        id: '5.email',
        text: 'E-mail alerts to the ops team configured, a test alert delivered recently',
        check: verified('alerts:email'),
      },
      {
        id: '5.dashboard',
        text: 'Dashboard shows real-time lead flow',
        check: verified('dashboard:live_flow'),
      },
      {
        id: '5.rollback_trigger',
        text: 'Rollback trigger defined (failure rate > 10%)',
        check: verified('limit:rollback_threshold'),
      },
    ],
  },
  {
    gate: 6,
    title: 'Financial limits confirmed',
    items: [
      { id: '6.daily_leads', text: 'Max daily leads: 10,000', check: verified('limit:daily_leads') },
      {
        id: '6.budget',
        text: 'Max budget exposure: $50M (score × lead value)',
        check: verified('limit:budget'),
      },
      {
        id: '6.cost_per_lead',
        text: 'Cost per lead analysis: < $10 per lead to market',
        check: attested('cfo'),
      },
      { id: '6.roi', text: 'ROI breakeven documented (positive 6-month ROI)', check: attested('cfo') },
    ],
  },
  {
    gate: 7,
    title: 'Rollback procedure documented',
    items: [
      {
        id: '7.procedure',
        text: 'Rollback command and procedure documented (valhalla rollback)',
        check: attested('head_of_operations'),
      },
      { id: '7.time', text: 'Rollback time under 5 minutes (a timed drill)', check: verified('drill:time') },
      { id: '7.clean', text: 'Data state after rollback verified clean', check: verified('drill:clean') },
      { id: '7.tested', text: 'Rollback tested at least once', check: verified('drill:tested') },
    ],
  },
  {
    gate: 8,
    title: 'Stakeholder sign-offs',
    items: [
      { id: '8.ceo', text: 'CEO/Leadership: approved the Phase 4 policy', check: verified('signoff:ceo') },
      { id: '8.cfo', text: 'CFO: approved the financial limits and ROI', check: verified('signoff:cfo') },
      {
        id: '8.general_counsel',
        text: 'General Counsel: approved data/privacy compliance',
        check: verified('signoff:general_counsel'),
      },
      {
        id: '8.risk_officer',
        text: 'Risk Officer: approved the operational risks',
        check: verified('signoff:risk_officer'),
      },
      {
        id: '8.head_of_operations',
        text: 'Head of Operations: approved (policy §6)',
        check: verified('signoff:head_of_operations'),
      },
    ],
  },
  {
    gate: 9,
    title: '72-hour stability test passed',
    items: [
      {
        id: '9.stability',
        text: 'Phase 3 ran 72+ hours: no interruption, stable scores, no memory growth, every outbound attempt blocked',
        check: verified('stability'),
      },
    ],
  },
];

/**
 * The audit actions whose latest entry is a verified item's evidence (recorded by `alerts test`,
 * `dashboard check`, `drill rollback`, `gates conformance` and `stability verify`).
 */
export const EVIDENCE_ACTIONS = {
  alertsTest: 'alerts.test',
  dashboardCheck: 'dashboard.checked',
  drill: 'drill.rollback',
  conformance: 'gates.conformance',
  /** The conformance run against the configured partner (the release manifest's), not the sandbox. */
  partnerConformance: 'gates.partner_conformance',
  stability: 'stability.verified',
} as const satisfies Record<string, AuditAction>;

/** The roles of the policy's §6, in its order. */
export const SIGNOFF_ROLES: readonly SignerRole[] = [
  'ceo',
  'cfo',
  'general_counsel',
  'risk_officer',
  'head_of_operations',
];

export const ROLE_TITLES: Readonly<Record<SignerRole, string>> = {
  ceo: 'CEO / Executive Leadership',
  cfo: 'CFO / Finance',
  general_counsel: 'General Counsel / Legal',
  risk_officer: 'Chief Risk Officer',
  head_of_operations: 'Head of Operations',
};

/** The item with this id, or undefined. */
export function findItem(id: string): (GateItem & { gate: number }) | undefined {
  for (const gate of GATES) {
    const item = gate.items.find((i) => i.id === id);
    if (item) return { ...item, gate: gate.gate };
  }
  return undefined;
}
