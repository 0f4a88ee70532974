import { describe, expect, it } from 'vitest';
import { leadKey, payloadSha256, toPartnerLead } from '../../src/engine/index.js';
import type { Lead } from '../../src/store/index.js';

function lead(id: number, overrides: Partial<Lead> = {}): Lead {
  return {
    id,
    dedup_key: `${id}`.padStart(32, 'a'),
    external_id: null,
    name: `Lead ${id}`,
    email: `lead${id}@example.test`,
    phone: null,
    company: null,
    score: 50 + id,
    source_ts: Date.parse('2026-11-20T12:00:00Z'),
    value: 100,
    state: 'in_flight',
    state_reason: null,
    ingested_at: 0,
    updated_at: 0,
    exported_at: null,
    run_id: 1,
    source_line: id,
    dry_run_at: null,
    erased_at: null,
    synthetic: 0,
    attributes: null,
    ...overrides,
  };
}

describe('what a batch key stands for', () => {
  it('hashes the leads in send order, whatever order they were selected in', () => {
    const [a, b, c] = [lead(1), lead(2), lead(3)];
    expect(payloadSha256('k', [c!, a!, b!])).toBe(payloadSha256('k', [a!, b!, c!]));
  });

  it('changes with any field the partner receives, and with the batch key', () => {
    const base = payloadSha256('k', [lead(1), lead(2)]);
    expect(payloadSha256('k', [lead(1), lead(2, { score: 99 })])).not.toBe(base);
    expect(payloadSha256('k', [lead(1), lead(2, { email: 'other@example.test' })])).not.toBe(base);
    expect(payloadSha256('k2', [lead(1), lead(2)])).not.toBe(base);
    // An attribute sent is part of what the key stands for; no attributes (or none kept) hash as always.
    const titled = payloadSha256('k', [lead(1), lead(2, { attributes: { title: 'CTO' } })]);
    expect(titled).not.toBe(base);
    expect(payloadSha256('k', [lead(1), lead(2, { attributes: { title: 'CEO' } })])).not.toBe(titled);
    expect(payloadSha256('k', [lead(1), lead(2, { attributes: {} })])).toBe(base);
  });

  it('gives each lead its own key from its dedup key, the same every time', () => {
    const l = lead(7);
    expect(toPartnerLead(l).idempotency_key).toBe(leadKey(l));
    expect(leadKey(l)).toBe(`lk_${l.dedup_key.slice(0, 32)}`);
    expect(toPartnerLead(l).source_timestamp).toBe('2026-11-20T12:00:00.000Z');
  });
});
