import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  amendedManifest,
  createKeyPair,
  documentBytes,
  fieldsRefusal,
  isSigningError,
  keyIdOf,
  parseSignedDocument,
  publicKeyOf,
  readManifestText,
  type SignedDocument,
  type SignedFields,
  signDocument,
  signFields,
  verifyDocument,
} from '../../src/gates/index.js';
import { TEST_INSTALLATION, testManifest } from '../support/manifest.js';

const POLICY = 'a'.repeat(64);
const NOW = Date.parse('2026-01-15T12:00:00Z');

function fields(keyId: string, overrides: Partial<SignedFields> = {}): SignedFields {
  return {
    kind: 'signoff',
    role: 'cfo',
    name: 'Frida Finance',
    date: '2026-01-15',
    comments: 'Approved the financial limits and ROI.',
    gate: null,
    item: null,
    policyHash: overrides.policyHash ?? POLICY,
    keyId,
    ...overrides,
    manifest: overrides.manifest ?? testManifest({ policyHash: overrides.policyHash ?? POLICY }),
  };
}

function errorOf(work: () => unknown): Error {
  try {
    work();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('keys', () => {
  it('creates an Ed25519 pair whose key id is the SHA-256 of the raw 32-byte public key', () => {
    const pair = createKeyPair();
    expect(pair.privateKeyPem).toContain('BEGIN PRIVATE KEY');
    expect(pair.publicKeyPem).toContain('BEGIN PUBLIC KEY');
    expect(pair.keyId).toMatch(/^[0-9a-f]{64}$/);
    // SPKI for Ed25519 is a 12-byte header followed by the raw key.
    const der = Buffer.from(pair.publicKeyPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expect(der).toHaveLength(44);
    expect(pair.keyId).toBe(createHash('sha256').update(der.subarray(12)).digest('hex'));
    expect(keyIdOf(pair.publicKeyPem)).toBe(pair.keyId);
    expect(keyIdOf(publicKeyOf(pair.privateKeyPem))).toBe(pair.keyId);
    expect(createKeyPair().keyId).not.toBe(pair.keyId);
  });

  it('refuses non-Ed25519, malformed and private keys with a clear error', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    const ed448 = generateKeyPairSync('ed448').publicKey.export({ type: 'spki', format: 'pem' });
    const rsaError = errorOf(() => keyIdOf(rsa.toString()));
    expect(isSigningError(rsaError) && rsaError.code).toBe('INVALID_KEY');
    expect(rsaError.message).toBe('the public key is rsa, not Ed25519');
    expect(errorOf(() => keyIdOf(ed448.toString())).message).toBe('the public key is ed448, not Ed25519');
    const garbage = errorOf(() => keyIdOf('-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n'));
    expect(isSigningError(garbage) && garbage.code).toBe('INVALID_KEY');
    expect(garbage.message).toMatch(/^not a readable public key PEM: /);
    expect(errorOf(() => keyIdOf('')).message).toMatch(/^not a readable public key PEM/);
    expect(errorOf(() => keyIdOf(createKeyPair().privateKeyPem)).message).toBe(
      'this is a private key: give the public key (the .pub file)',
    );
    const rsaPrivate = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    const pair = createKeyPair();
    expect(errorOf(() => signDocument(fields(pair.keyId), rsaPrivate.toString())).message).toBe(
      'the private key is rsa, not Ed25519',
    );
  });
});

describe('sign and verify', () => {
  const pair = createKeyPair();
  const doc = signDocument(fields(pair.keyId), pair.privateKeyPem);

  it('round-trips: the document verifies with its key, and survives pretty JSON and parsing', () => {
    expect(doc.format).toBe('valhalla-signature/2');
    expect(Buffer.from(doc.signature, 'base64')).toHaveLength(64);
    expect(verifyDocument(doc, pair.publicKeyPem)).toBe(true);
    const parsed = parseSignedDocument(JSON.stringify(doc, null, 2));
    expect(parsed).toEqual(doc);
    expect(verifyDocument(parsed, pair.publicKeyPem)).toBe(true);
    // Key order does not matter: the signed bytes are canonical.
    const reversed = Object.fromEntries(Object.entries(doc).reverse());
    expect(verifyDocument(parseSignedDocument(JSON.stringify(reversed)), pair.publicKeyPem)).toBe(true);
    // The manifest is signed in its canonical form too (keys sorted at every level).
    const manifest = `{"cycleIntervalSeconds":300,"dedupKey":"email","format":"valhalla-manifest/1","installationId":"${TEST_INSTALLATION}","limits":{"actionsPerCycle":5,"leadsPerCycle":25,"rateLimitPerSecond":5},"memoryPerProcessMb":512,"monitoring":{"dashboard":true,"email":true,"emailTo":["ops@example.org"],"logLevel":"info","metrics":true,"slack":true,"slackWebhookSha256":"${'b'.repeat(64)}"},"partner":{"caFingerprints":null,"clientId":"valhalla","tokenUrl":"https://partner.example/oauth/token","url":"https://partner.example/"},"policyHash":"${POLICY}"}`;
    expect(documentBytes(doc)).toBe(
      `{"comments":"Approved the financial limits and ROI.","date":"2026-01-15","format":"valhalla-signature/2","gate":null,"item":null,"keyId":"${pair.keyId}","kind":"signoff","manifest":${manifest},"name":"Frida Finance","policyHash":"${POLICY}","role":"cfo"}`,
    );
  });

  it('fails verification with another key', () => {
    const other = createKeyPair();
    expect(verifyDocument(doc, other.publicKeyPem)).toBe(false);
    // Even when the document names the other key: the signature is not theirs.
    expect(verifyDocument({ ...doc, keyId: other.keyId }, other.publicKeyPem)).toBe(false);
  });

  const tampered: [string, Partial<SignedDocument>][] = [
    ['kind', { kind: 'activation' }],
    ['role', { role: 'ceo' }],
    ['name', { name: 'Frida Financ' }],
    ['date', { date: '2026-01-14' }],
    ['comments', { comments: 'Approved the financial limits and ROI' }],
    ['gate', { gate: 6 }],
    ['item', { item: '6.roi' }],
    ['policyHash', { policyHash: 'b'.repeat(64) }],
    ['keyId', { keyId: 'c'.repeat(64) }],
    ['manifest', { manifest: testManifest({ limits: { rateLimitPerSecond: 4 } }) }],
    ['format', { format: 'valhalla-signature/1' as 'valhalla-signature/2' }],
    ['signature', { signature: Buffer.alloc(64, 1).toString('base64') }],
  ];
  it('covers every field of the document', () => {
    expect(tampered.map(([field]) => field).sort()).toEqual(Object.keys(doc).sort());
  });
  it.each(tampered)('fails verification when %s is changed', (_field, change) => {
    const changed = { ...doc, ...change };
    expect(changed).not.toEqual(doc);
    expect(verifyDocument(changed, pair.publicKeyPem)).toBe(false);
  });

  it('refuses to sign with a key other than the one the fields name', () => {
    const other = createKeyPair();
    const error = errorOf(() => signDocument(fields(other.keyId), pair.privateKeyPem));
    expect(isSigningError(error) && error.code).toBe('KEY_MISMATCH');
    expect(error.message).toBe(`the private key is ${pair.keyId}, the document names ${other.keyId}`);
  });

  it('refuses to sign invalid fields, naming the field', () => {
    const error = errorOf(() => signDocument(fields(pair.keyId, { date: '2026-02-30' }), pair.privateKeyPem));
    expect(isSigningError(error) && error.code).toBe('INVALID_DOCUMENT');
    expect(error.message).toBe('cannot sign: date: must be a calendar day written YYYY-MM-DD');
  });
});

describe('parseSignedDocument', () => {
  const pair = createKeyPair();
  const doc = signDocument(fields(pair.keyId), pair.privateKeyPem);
  const text = (change: Record<string, unknown>) => JSON.stringify({ ...doc, ...change });

  it.each([
    ['not JSON', '{"kind":', /^the signed document is not JSON: /],
    ['not an object', '[1,2]', /^invalid signed document: \(document\): /],
    ['a bad kind', text({ kind: 'veto' }), /^invalid signed document: kind: /],
    ['a bad role', text({ role: 'cto' }), /^invalid signed document: role: /],
    ['an empty name', text({ name: '' }), /^invalid signed document: name: must not be empty$/],
    ['a bad date', text({ date: '15/01/2026' }), /^invalid signed document: date: must be a calendar day/],
    ['a bad gate', text({ gate: 10 }), /^invalid signed document: gate: /],
    ['a bad policy hash', text({ policyHash: 'abc' }), /^invalid signed document: policyHash: must be 64/],
    ['a bad key id', text({ keyId: 'XYZ' }), /^invalid signed document: keyId: must be 64/],
    ['another format', text({ format: 'other/1' }), /^invalid signed document: format: /],
    [
      'the format before release manifests',
      text({ format: 'valhalla-signature/1', manifest: undefined }),
      /^a document of the format before release manifests \(valhalla-signature\/1\) names no installation and no manifest: sign again/,
    ],
    [
      "a policy hash that is not the manifest's",
      text({ policyHash: 'b'.repeat(64) }),
      /^invalid signed document: policyHash: must be the manifest's policy hash$/,
    ],
    [
      'a manifest with a limit above the hard maximum',
      text({ manifest: testManifest({ limits: { rateLimitPerSecond: 6 } }) }),
      /^invalid signed document: manifest\.limits\.rateLimitPerSecond: /,
    ],
    [
      'a manifest without an installation id',
      text({ manifest: { ...testManifest(), installationId: 'prod' } }),
      /^invalid signed document: manifest\.installationId: must be an installation id/,
    ],
    [
      'a short signature',
      text({ signature: 'AAAA' }),
      /^invalid signed document: signature: must be a 64-byte/,
    ],
    ['an extra field', text({ extra: 1 }), /^invalid signed document: \(document\): .*extra/],
    [
      'a missing field',
      JSON.stringify({ ...doc, comments: undefined }),
      /^invalid signed document: comments: /,
    ],
  ])('refuses %s, naming the field', (_what, input, message) => {
    const error = errorOf(() => parseSignedDocument(input));
    expect(isSigningError(error) && error.code).toBe('INVALID_DOCUMENT');
    expect(error.message).toMatch(message);
  });
});

describe('fieldsRefusal', () => {
  const keyId = 'd'.repeat(64);
  it('accepts a sign-off dated today and a matching attestation', () => {
    expect(fieldsRefusal(fields(keyId), NOW)).toBeNull();
    expect(
      fieldsRefusal(fields(keyId, { kind: 'attestation', role: 'cfo', gate: 6, item: '6.roi' }), NOW),
    ).toBeNull();
  });
  it.each([
    [{ date: '2026-01-16' }, 'the date 2026-01-16 is in the future (today is 2026-01-15, UTC)'],
    [
      { date: '2025-12-15' },
      'the date 2025-12-15 is more than 30 days ago (earliest 2025-12-16): sign again',
    ],
    [{ date: '2026-1-15' }, 'the date "2026-1-15" is not YYYY-MM-DD'],
    [
      { kind: 'attestation', gate: 8, item: '8.cfo' },
      'item 8.cfo is verified by the system from evidence, not attested',
    ],
    [
      { kind: 'attestation', gate: 3, item: '3.gdpr_checklist' },
      'item 3.gdpr_checklist is attested by the general_counsel, not the cfo',
    ],
    [{ kind: 'attestation', gate: 6, item: '6.nope' }, 'no gate item 6.nope'],
    [{ kind: 'attestation', gate: 5, item: '6.roi' }, 'item 6.roi belongs to gate 6, not 5'],
    [{ kind: 'attestation' }, 'an attestation must name an item'],
    [{ kind: 'signoff', gate: 6, item: '6.roi' }, 'a signoff names no gate or item'],
    [{ kind: 'activation' }, "the activation is the CEO's, not the cfo's"],
    [{ kind: 'amendment', role: 'ceo' }, "an amendment is the CFO's, not the ceo's"],
    [
      { comments: 'approved; questions to jane dot doe at example dot com' },
      'what looks like an e-mail address is in the comments, which would be kept for good in the audit chain: write no personal data there; give a ticket or request number with its prefix (e.g. DSR-2026-0001234) instead',
    ],
  ] as [Partial<SignedFields>, string][])('refuses %o', (change, reason) => {
    expect(fieldsRefusal(fields(keyId, change), NOW)).toBe(reason);
  });
});

describe('signing without an installation (a signer on another machine)', () => {
  const manifest = testManifest({ policyHash: POLICY });

  it('reads a release manifest from a file, alone or as `gates manifest --json` prints it', () => {
    expect(readManifestText(JSON.stringify(manifest), 'm.json')).toEqual({ ok: true, value: manifest });
    expect(readManifestText(JSON.stringify({ document: manifest, hash: 'x' }), 'm.json')).toEqual({
      ok: true,
      value: manifest,
    });
    expect(readManifestText('{"format":', 'm.json')).toMatchObject({
      ok: false,
      problem: expect.stringMatching(/^the release manifest m\.json is not JSON: /),
    });
    const { dedupKey: _, ...noDedup } = manifest;
    expect(readManifestText(JSON.stringify(noDedup), 'm.json')).toMatchObject({
      ok: false,
      problem: expect.stringMatching(/^m\.json is not a release manifest: dedupKey: /),
    });
  });

  it('an amendment raises the named limits over the approved ones, and never above a hard maximum', () => {
    const approved = { ...manifest.limits, rateLimitPerSecond: 2 };
    const amended = amendedManifest(manifest, approved, { leadsPerCycle: 30 });
    expect(amended).toEqual({ ok: true, value: { ...manifest, limits: { ...approved, leadsPerCycle: 30 } } });
    expect(amendedManifest(manifest, null, { rateLimitPerSecond: 6 })).toMatchObject({
      ok: false,
      problem: expect.stringMatching(/^above the hard maximum: rateLimitPerSecond: /),
    });
  });

  it('signs with the private key; a document recordSignature would refuse is refused only when asked', () => {
    const pair = createKeyPair();
    const base = { ...fields(pair.keyId), manifest } as SignedFields;
    const { keyId: _k, policyHash: _p, date: _d, ...unsigned } = base;
    const signed = signFields(unsigned, pair.privateKeyPem, { now: NOW, checkNow: true });
    if (!signed.ok) throw new Error(signed.problem);
    expect(signed.value).toMatchObject({ keyId: pair.keyId, policyHash: POLICY, date: '2026-01-15' });
    expect(verifyDocument(signed.value, pair.publicKeyPem)).toBe(true);
    const old = { now: NOW, date: '2025-01-01' };
    expect(signFields(unsigned, pair.privateKeyPem, { ...old, checkNow: true })).toMatchObject({ ok: false });
    expect(signFields(unsigned, pair.privateKeyPem, { ...old, checkNow: false })).toMatchObject({ ok: true });
    expect(
      isSigningError(errorOf(() => signFields(unsigned, 'not a key', { now: NOW, checkNow: false }))),
    ).toBe(true);
  });
});
