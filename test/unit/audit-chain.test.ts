import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AuditEntry,
  ChainVerifier,
  describeBreak,
  entryHash,
  GENESIS_HASH,
} from '../../src/audit/index.js';
import { canonicalJson } from '../../src/policy/canonical-json.js';

const AT = Date.parse('2026-11-20T12:00:00Z');

/** A valid chain of `n` entries, built by hand the way the database holds it. */
function chain(n: number): AuditEntry[] {
  const entries: AuditEntry[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const body = {
      seq,
      at: AT + seq,
      actor: 'tester',
      action: `step.${seq}`,
      subject: seq % 2 ? `lead:${seq}` : null,
      details: `{"n":${seq}}`,
      prev_hash: prev,
    };
    const entry = { ...body, hash: entryHash(body) };
    entries.push(entry);
    prev = entry.hash;
  }
  return entries;
}

function verifyAll(entries: AuditEntry[]) {
  const verifier = new ChainVerifier();
  const accepted = entries.map((entry) => verifier.push(entry));
  return { accepted, result: verifier.result() };
}

describe('entryHash', () => {
  const body = {
    seq: 7,
    at: 1_700_000_000_000,
    actor: 'ops',
    action: 'mode.paused',
    subject: 'L-abc',
    details: '{"b":1}',
    prev_hash: 'f'.repeat(64),
  };

  it('is SHA-256 (hex) of the canonical JSON of the seven fields, as docs/audit.md states it', () => {
    const text = `{"action":"mode.paused","actor":"ops","at":1700000000000,"details":"{\\"b\\":1}","prev_hash":"${'f'.repeat(64)}","seq":7,"subject":"L-abc"}`;
    expect(entryHash(body)).toBe(createHash('sha256').update(text).digest('hex'));
  });

  it('does not depend on the hash field or on key order', () => {
    const reordered = {
      prev_hash: body.prev_hash,
      details: body.details,
      subject: body.subject,
      action: body.action,
      actor: body.actor,
      at: body.at,
      seq: body.seq,
    };
    expect(entryHash({ ...body, hash: 'anything' } as AuditEntry)).toBe(entryHash(body));
    expect(entryHash(reordered)).toBe(entryHash(body));
  });

  it.each([
    ['seq', { seq: 8 }],
    ['at', { at: body.at + 1 }],
    ['actor', { actor: 'ops2' }],
    ['action', { action: 'mode.live' }],
    ['subject', { subject: null }],
    ['details', { details: '{"b":2}' }],
    ['prev_hash', { prev_hash: 'e'.repeat(64) }],
  ])('changes when %s changes', (_field, change) => {
    expect(entryHash({ ...body, ...change })).not.toBe(entryHash(body));
  });
});

describe('ChainVerifier', () => {
  it('accepts an empty chain: 0 entries, head = the genesis hash of 64 zeros', () => {
    expect(GENESIS_HASH).toBe('0'.repeat(64));
    expect(new ChainVerifier().result()).toEqual({
      ok: true,
      entries: 0,
      headHash: GENESIS_HASH,
      firstBreak: null,
    });
  });

  it('accepts an intact chain and reports its count and head', () => {
    const entries = chain(6);
    const { accepted, result } = verifyAll(entries);
    expect(accepted).toEqual([true, true, true, true, true, true]);
    expect(result).toEqual({ ok: true, entries: 6, headHash: entries[5]!.hash, firstBreak: null });
  });

  it('finds an edited entry: hash_mismatch with the hash its contents have', () => {
    const entries = chain(5);
    entries[2] = { ...entries[2]!, details: '{"n":33}' };
    const { accepted, result } = verifyAll(entries);
    expect(accepted).toEqual([true, true, false, false, false]);
    expect(result).toEqual({
      ok: false,
      entries: 2,
      headHash: entries[1]!.hash,
      firstBreak: { seq: 3, problem: 'hash_mismatch', expectedHash: entryHash(entries[2]!) },
    });
  });

  it('finds a removed entry: sequence_gap at the entry found in its place', () => {
    const entries = chain(5);
    entries.splice(1, 1);
    expect(verifyAll(entries).result).toMatchObject({
      ok: false,
      entries: 1,
      firstBreak: { seq: 3, problem: 'sequence_gap', expected: 2 },
    });
  });

  it('finds a chain that does not start at entry 1', () => {
    expect(verifyAll(chain(3).slice(1)).result).toMatchObject({
      ok: false,
      entries: 0,
      firstBreak: { seq: 2, problem: 'sequence_gap', expected: 1 },
    });
  });

  it('finds reordered entries: broken_link with the previous hash it should have held', () => {
    const entries = chain(4);
    const [second, third] = [entries[1]!, entries[2]!];
    entries[1] = { ...third, seq: 2 };
    entries[2] = { ...second, seq: 3 };
    expect(verifyAll(entries).result).toMatchObject({
      ok: false,
      entries: 1,
      firstBreak: { seq: 2, problem: 'broken_link', expectedPrevHash: entries[0]!.hash },
    });
  });

  it('finds a forged hash at the next entry, whose link no longer matches', () => {
    const entries = chain(4);
    const body = { ...entries[1]!, details: '{"n":22}' };
    entries[1] = { ...body, hash: entryHash(body) };
    expect(verifyAll(entries).result).toEqual({
      ok: false,
      entries: 2,
      headHash: entries[1]!.hash,
      firstBreak: { seq: 3, problem: 'broken_link', expectedPrevHash: entries[1]!.hash },
    });
  });

  it('finds an entry whose first link is not the genesis hash', () => {
    const entries = chain(2);
    const body = { ...entries[0]!, prev_hash: 'a'.repeat(64) };
    entries[0] = { ...body, hash: entryHash(body) };
    expect(verifyAll(entries).result).toMatchObject({
      ok: false,
      entries: 0,
      firstBreak: { seq: 1, problem: 'broken_link', expectedPrevHash: GENESIS_HASH },
    });
  });

  it('keeps the first break: later problems, and later good entries, change nothing', () => {
    const entries = chain(6);
    entries[1] = { ...entries[1]!, actor: 'mallory' };
    entries.splice(4, 1);
    const verifier = new ChainVerifier();
    for (const entry of entries) verifier.push(entry);
    expect(verifier.push(chain(7)[6]!)).toBe(false);
    expect(verifier.result()).toMatchObject({
      ok: false,
      entries: 1,
      firstBreak: { seq: 2, problem: 'hash_mismatch' },
    });
  });

  it('describes each kind of break with the entry number', () => {
    expect(describeBreak({ seq: 4, problem: 'sequence_gap', expected: 3 })).toBe(
      'entry 4: sequence gap (expected entry 3; entries were removed or inserted)',
    );
    expect(describeBreak({ seq: 9, problem: 'broken_link', expectedPrevHash: 'x' })).toBe(
      'entry 9: its previous-hash does not match entry 8 (the chain was cut or reordered)',
    );
    expect(describeBreak({ seq: 12, problem: 'hash_mismatch', expectedHash: 'y' })).toBe(
      'entry 12: its contents do not match its hash (the entry was edited)',
    );
  });
});

describe('canonicalJson', () => {
  it('sorts object keys at every depth, arrays included, with no white space', () => {
    expect(canonicalJson({ b: 1, a: { z: [3, { y: true, x: null }], c: 'text' } })).toBe(
      '{"a":{"c":"text","z":[3,{"x":null,"y":true}]},"b":1}',
    );
  });

  it('keeps array order, drops undefined members, and writes undefined in arrays as null', () => {
    expect(canonicalJson({ list: [3, 1, 2], gone: undefined, holes: [undefined, 1] })).toBe(
      '{"holes":[null,1],"list":[3,1,2]}',
    );
  });

  it('is independent of key insertion order', () => {
    const shuffle = (value: unknown, seed: number): unknown => {
      if (Array.isArray(value)) return value.map((v, i) => shuffle(v, seed + i));
      if (value === null || typeof value !== 'object') return value;
      const entries = Object.entries(value);
      const rotated = entries.map((_, i) => entries[(i + seed) % entries.length]!).reverse();
      return Object.fromEntries(rotated.map(([k, v]) => [k, shuffle(v, seed + 1)]));
    };
    fc.assert(
      fc.property(fc.jsonValue(), fc.nat(50), (value, seed) => {
        expect(canonicalJson(shuffle(value, seed))).toBe(canonicalJson(value));
      }),
    );
  });

  it('holds the same data as JSON.stringify, and is its own canonical form', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = canonicalJson(value);
        // Compared through JSON.parse: JSON itself writes -0 as 0.
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
        expect(text).toBe(canonicalJson(JSON.parse(text)));
      }),
    );
  });

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
  ])('rejects %s, at the top and nested', (_name, bad) => {
    expect(() => canonicalJson(bad)).toThrow(TypeError);
    expect(() => canonicalJson({ a: [1, { b: bad }] })).toThrow(/canonical JSON cannot hold/);
  });

  it('rejects values JSON cannot hold', () => {
    expect(() => canonicalJson({ n: 10n })).toThrow(TypeError);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(TypeError);
    expect(() => canonicalJson(Symbol('s'))).toThrow(TypeError);
  });

  it('refuses a Date, a Map, a Set or a class instance instead of hashing it as {}', () => {
    class Point {
      x = 1;
    }
    for (const bad of [new Date(0), new Map([['a', 1]]), new Set([1]), new Point()]) {
      expect(() => canonicalJson({ at: bad })).toThrow(/plain objects only/);
    }
    expect(canonicalJson(Object.assign(Object.create(null), { b: 1, a: 2 }))).toBe('{"a":2,"b":1}');
  });
});
