import { truncate } from './dom';
import type { AuditEntry } from './types';

/**
 * Families of audit actions that are part of a lead's way through the system: what the "live lead
 * flow" shows. Sign-offs, signers, workers and the like stay in the full audit panel.
 */
const LEAD_FLOW_PREFIXES = [
  'ingest.',
  'guard.',
  'batch.',
  'delivery.',
  'cycle.',
  'lead.',
  'leads.',
  'quarantine.',
  'recovery.',
  'mode.',
  'drill.',
  'phase4.',
];

export function isLeadFlowAction(action: string): boolean {
  return LEAD_FLOW_PREFIXES.some((prefix) => action.startsWith(prefix));
}

const SUMMARY_MAX = 160;
const VALUE_MAX = 60;
// Hashes, UUIDs and keys say nothing at a glance; their first characters are enough to tell them apart.
const OPAQUE = /^[A-Za-z0-9_:+/=-]{33,}$/;

function scalar(value: unknown): string | null {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'number':
    case 'boolean':
      return String(value);
    case 'string':
      return OPAQUE.test(value) ? `${value.slice(0, 8)}…` : truncate(value, VALUE_MAX);
    default:
      return null;
  }
}

function pluralize(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/**
 * One line that says what an audit entry is about, built from its `details`: the mode change, the
 * number of leads, the outcome and the reason first, then the other plain values. Nested objects are
 * counted, never dumped.
 */
export function summarizeAudit(entry: Pick<AuditEntry, 'details' | 'subject'>): string {
  const details = entry.details && typeof entry.details === 'object' ? entry.details : {};
  const parts: string[] = [];
  const used = new Set<string>();
  const take = (key: string) => {
    used.add(key);
    return details[key];
  };

  const from = scalar(take('from'));
  const to = scalar(take('to'));
  if (from !== null && to !== null) parts.push(`${from} → ${to}`);
  const leads = take('leads');
  if (Array.isArray(leads)) parts.push(pluralize(leads.length, 'lead'));
  else if (typeof leads === 'number') parts.push(pluralize(leads, 'lead'));
  for (const key of ['count', 'accepted', 'duplicate', 'rejected', 'status', 'attempt', 'code']) {
    const value = take(key);
    if (typeof value === 'number' || typeof value === 'string') parts.push(`${key} ${scalar(value)}`);
    else if (Array.isArray(value)) parts.push(`${key} ${value.length}`);
  }
  for (const key of ['reason', 'message']) {
    const value = take(key);
    if (typeof value === 'string' && value !== '') parts.push(`“${truncate(value, VALUE_MAX)}”`);
  }
  for (const [key, value] of Object.entries(details)) {
    if (used.has(key)) continue;
    if (Array.isArray(value)) {
      // `lines: [first, last]` of an ingest chunk reads better as a range than as a count.
      const [first, last] = value;
      if (key === 'lines' && value.length === 2 && typeof first === 'number' && typeof last === 'number') {
        parts.push(`lines ${first}–${last}`);
      } else parts.push(`${key}: ${value.length}`);
    } else {
      const text = scalar(value);
      if (text !== null) parts.push(`${key} ${text}`);
    }
  }
  if (parts.length === 0 && entry.subject) parts.push(truncate(entry.subject, VALUE_MAX));
  return truncate(parts.join(' · '), SUMMARY_MAX);
}
