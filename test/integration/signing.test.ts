import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openApp } from '../../src/app/index.js';
import { type AuditLog, createAuditLog } from '../../src/audit/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import {
  addSigner,
  createKeyPair,
  documentBytes,
  keyIdOf,
  listSigners,
  parseSignedDocument,
  recordSignature,
  revokeSigner,
  type SignedDocument,
  type SignedFields,
  type SigningDeps,
  signDocument,
  validSignatures,
} from '../../src/gates/index.js';
import { openStore, type SignerRole, type Store } from '../../src/store/index.js';
import { backends, dropTestSchemas } from '../support/backends.js';
import { runInProcess, testEnv } from '../support/cli.js';
import { testManifest } from '../support/manifest.js';
import { tempDir } from '../support/tmp.js';

const list = await backends();
afterAll(dropTestSchemas);

const POLICY = 'a'.repeat(64);
const OTHER_POLICY = 'b'.repeat(64);
const START = Date.parse('2026-01-15T12:00:00Z');
const TODAY = '2026-01-15';
const ROLES: SignerRole[] = ['ceo', 'cfo', 'general_counsel', 'risk_officer', 'head_of_operations'];
const NAMES: Record<SignerRole, string> = {
  ceo: 'Cora Chief',
  cfo: 'Frida Finance',
  general_counsel: 'Gus Counsel',
  risk_officer: 'Rita Risk',
  head_of_operations: 'Otto Ops',
};
const KEYS = Object.fromEntries(ROLES.map((role) => [role, createKeyPair()])) as Record<
  SignerRole,
  ReturnType<typeof createKeyPair>
>;

function fields(role: SignerRole, overrides: Partial<SignedFields> = {}): SignedFields {
  const policyHash = overrides.policyHash ?? POLICY;
  return {
    kind: 'signoff',
    role,
    name: NAMES[role],
    date: TODAY,
    comments: `approved by the ${role}`,
    gate: null,
    item: null,
    policyHash,
    keyId: KEYS[role].keyId,
    ...overrides,
    manifest: overrides.manifest ?? testManifest({ policyHash }),
  };
}

/** Signed with `key`'s private key (the role's own unless said otherwise). */
function signed(role: SignerRole, overrides: Partial<SignedFields> = {}, key = KEYS[role]): SignedDocument {
  return signDocument(fields(role, { keyId: key.keyId, ...overrides }), key.privateKeyPem);
}

describe.each(list)('signers and signatures on $name', (backend) => {
  let store: Store;
  let clock: ManualClock;
  let audit: AuditLog;
  let deps: SigningDeps;

  beforeEach(async () => {
    store = await openStore(backend.target());
    clock = new ManualClock(START);
    audit = createAuditLog(store, clock);
    deps = { db: store.db, dialect: store.dialect, audit };
  });
  afterEach(async () => {
    await store.close();
  });

  const record = (doc: SignedDocument, policyHash = POLICY) =>
    recordSignature(deps, doc, {
      actor: 'test-operator',
      now: clock.now(),
      manifest: testManifest({ policyHash }),
    });

  async function registerAll(): Promise<void> {
    for (const role of ROLES) {
      const added = await addSigner(
        deps,
        { role, name: NAMES[role], publicKeyPem: KEYS[role].publicKeyPem },
        { actor: 'test-operator', now: clock.now() },
      );
      expect(added.ok).toBe(true);
    }
  }

  async function auditEntries(action?: string) {
    const rows = await store.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
    return rows
      .filter((r) => action === undefined || r.action === action)
      .map((r) => ({
        action: r.action,
        subject: r.subject,
        details: JSON.parse(r.details) as Record<string, unknown>,
      }));
  }

  async function signatureCount(): Promise<number> {
    return (await store.db.selectFrom('signatures').select('id').execute()).length;
  }

  it('records the five sign-offs and then the CEO activation; every read re-verifies them', async () => {
    await registerAll();
    const signers = await listSigners(store.db);
    expect(signers.map((s) => [s.role, s.name, s.key_id, s.added_by, s.revoked_at])).toEqual(
      ROLES.map((role) => [role, NAMES[role], KEYS[role].keyId, 'test-operator', null]),
    );
    expect(signers[0]!.public_key).toBe(KEYS.ceo.publicKeyPem);

    const ids: number[] = [];
    for (const role of ROLES) {
      const result = await record(signed(role));
      expect(result).toMatchObject({ ok: true });
      if (result.ok) ids.push(result.id);
    }
    const activation = await record(signed('ceo', { kind: 'activation', comments: 'go' }));
    expect(activation.ok).toBe(true);

    const { valid, invalid } = await validSignatures(store.db, testManifest({ policyHash: POLICY }));
    expect(invalid).toEqual([]);
    expect(valid.map((r) => `${r.kind}:${r.role}`)).toEqual([
      ...ROLES.map((role) => `signoff:${role}`),
      'activation:ceo',
    ]);
    const cfoRow = valid.find((r) => r.role === 'cfo')!;
    const cfoDoc = signed('cfo');
    expect(cfoRow).toMatchObject({
      name: NAMES.cfo,
      gate: null,
      item: null,
      policy_hash: POLICY,
      key_id: KEYS.cfo.keyId,
      recorded_at: START,
      recorded_by: 'test-operator',
      document: documentBytes(cfoDoc),
      // Ed25519 is deterministic: the same fields and key give the same signature.
      signature: cfoDoc.signature,
    });

    expect((await auditEntries('signer.added')).map((e) => e.details)).toEqual(
      ROLES.map((role) => ({ role, name: NAMES[role], keyId: KEYS[role].keyId })),
    );
    const recorded = await auditEntries('signature.recorded');
    expect(recorded).toHaveLength(6);
    expect(recorded[1]).toMatchObject({
      subject: KEYS.cfo.keyId,
      details: { kind: 'signoff', role: 'cfo', name: NAMES.cfo, keyId: KEYS.cfo.keyId, item: null },
    });
    const chain = JSON.stringify(await auditEntries());
    expect(chain).not.toContain(cfoDoc.signature);
    expect((await audit.verify()).ok).toBe(true);
  });

  it('refuses the activation until valid sign-offs of all five roles exist', async () => {
    await registerAll();
    const activation = signed('ceo', { kind: 'activation' });
    expect(await record(activation)).toEqual({
      ok: false,
      reason:
        'the activation needs valid sign-offs of all five roles first; missing: ceo, cfo, general_counsel, risk_officer, head_of_operations',
    });
    for (const role of ROLES.slice(0, 4)) expect((await record(signed(role))).ok).toBe(true);
    expect(await record(activation)).toEqual({
      ok: false,
      reason: 'the activation needs valid sign-offs of all five roles first; missing: head_of_operations',
    });
    // A sign-off for another policy does not count.
    expect((await record(signed('head_of_operations'), OTHER_POLICY)).ok).toBe(false);
    expect(await record(activation)).toMatchObject({ ok: false });
    expect((await record(signed('head_of_operations'))).ok).toBe(true);
    expect(await record(activation)).toMatchObject({ ok: true });
    // Another role's key cannot activate, even over its own role.
    expect(await record(signed('cfo', { kind: 'activation' }))).toEqual({
      ok: false,
      reason: "the activation is the CEO's, not the cfo's",
    });
    const refusals = await auditEntries('signature.refused');
    expect(refusals.map((r) => r.details.reason)).toEqual([
      expect.stringMatching(/missing: ceo, cfo/),
      expect.stringMatching(/missing: head_of_operations$/),
      expect.stringMatching(/^signed against policy aaaaaaaaaaaa…, the current policy is bbbbbbbbbbbb…/),
      expect.stringMatching(/missing: head_of_operations$/),
      "the activation is the CEO's, not the cfo's",
    ]);
    expect(refusals[0]).toMatchObject({
      subject: KEYS.ceo.keyId,
      details: { kind: 'activation', role: 'ceo', name: NAMES.ceo, keyId: KEYS.ceo.keyId },
    });
  });

  const stranger = createKeyPair();
  const refusals: [string, () => SignedDocument, string | RegExp][] = [
    [
      'an unregistered key',
      () => signDocument(fields('cfo', { keyId: stranger.keyId }), stranger.privateKeyPem),
      `the key ${stranger.keyId} is not a registered signer's`,
    ],
    [
      'a role other than the key’s',
      () => signed('ceo', {}, KEYS.cfo),
      'the key is registered to the cfo, the document says ceo',
    ],
    [
      'a name other than the registered one',
      () => signed('cfo', { name: 'Fred Finance' }),
      'the key is registered to "Frida Finance", the document names "Fred Finance"',
    ],
    [
      'another policy hash',
      () => signed('cfo', { policyHash: OTHER_POLICY }),
      'signed against policy bbbbbbbbbbbb…, the current policy is aaaaaaaaaaaa…: sign the current policy',
    ],
    [
      'a field changed after signing',
      () => ({ ...signed('cfo'), comments: 'approved, with reservations' }),
      'the signature does not verify: the document was changed after it was signed, or signed with another key',
    ],
    [
      'a signature by another key',
      () => ({ ...signed('cfo'), signature: signed('ceo').signature }),
      /^the signature does not verify/,
    ],
    [
      'an attestation of a verified item',
      () => signed('cfo', { kind: 'attestation', gate: 6, item: '6.daily_leads' }),
      'item 6.daily_leads is verified by the system from evidence, not attested',
    ],
    [
      'an attestation of another role’s item',
      () => signed('cfo', { kind: 'attestation', gate: 3, item: '3.gdpr_checklist' }),
      'item 3.gdpr_checklist is attested by the general_counsel, not the cfo',
    ],
    [
      'an attestation of an item that does not exist',
      () => signed('cfo', { kind: 'attestation', gate: 6, item: '6.vibes' }),
      'no gate item 6.vibes',
    ],
    [
      'a date in the future',
      () => signed('cfo', { date: '2026-01-16' }),
      'the date 2026-01-16 is in the future (today is 2026-01-15, UTC)',
    ],
    [
      'a malformed document',
      () => ({ ...signed('cfo'), date: '15.01.2026' }),
      'malformed document: date: must be a calendar day written YYYY-MM-DD',
    ],
  ];

  it.each(refusals)('refuses %s, audits the refusal and records nothing', async (_what, make, reason) => {
    await registerAll();
    const doc = make();
    const result = await record(doc);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
    expect(await signatureCount()).toBe(0);
    const refused = await auditEntries('signature.refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]!.details).toMatchObject({ kind: doc.kind, role: doc.role, keyId: doc.keyId });
    expect(refused[0]!.details.reason).toMatch(reason);
    expect(JSON.stringify(refused[0])).not.toContain(doc.signature);
    expect(await auditEntries('signature.recorded')).toEqual([]);
  });

  it('records an attestation, then refuses a duplicate of it and of a sign-off', async () => {
    await registerAll();
    const attestation = signed('general_counsel', { kind: 'attestation', gate: 3, item: '3.gdpr_checklist' });
    const first = await record(attestation);
    expect(first.ok).toBe(true);
    const again = await record(
      signed('general_counsel', {
        kind: 'attestation',
        gate: 3,
        item: '3.gdpr_checklist',
        comments: 'again',
      }),
    );
    expect(again).toEqual({
      ok: false,
      reason: `a valid attestation like this one is already recorded (#${first.ok ? first.id : 0})`,
    });
    // Another item of the same role is not a duplicate.
    expect(
      (await record(signed('general_counsel', { kind: 'attestation', gate: 3, item: '3.retention_policy' })))
        .ok,
    ).toBe(true);
    const signoff = await record(signed('cfo'));
    expect(signoff.ok).toBe(true);
    expect(await record(signed('cfo', { comments: 'twice' }))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^a valid sign-off like this one is already recorded \(#\d+\)$/),
    });
    expect(await signatureCount()).toBe(3);
    const { valid } = await validSignatures(store.db, testManifest({ policyHash: POLICY }));
    expect(valid.map((r) => r.item)).toEqual(['3.gdpr_checklist', '3.retention_policy', null]);
    expect(valid[0]!.gate).toBe(3);
  });

  it('revoking a key voids its signatures, keeps the signer, and refuses its new ones', async () => {
    await registerAll();
    expect((await record(signed('cfo'))).ok).toBe(true);
    expect((await record(signed('ceo'))).ok).toBe(true);
    clock.advance(60_000);
    const revoked = await revokeSigner(
      deps,
      { keyId: KEYS.cfo.keyId, reason: 'laptop stolen' },
      { actor: 'test-operator', now: clock.now() },
    );
    expect(revoked).toMatchObject({ ok: true, voided: 1, signer: { revoked_at: START + 60_000 } });

    const { valid, invalid } = await validSignatures(store.db, testManifest({ policyHash: POLICY }));
    expect(valid.map((r) => r.role)).toEqual(['ceo']);
    expect(invalid).toHaveLength(1);
    expect(invalid[0]!.row.role).toBe('cfo');
    expect(invalid[0]!.reason).toBe(
      `void: the key ${KEYS.cfo.keyId} (cfo, Frida Finance) was revoked at 2026-01-15T12:01:00.000Z by test-operator: laptop stolen`,
    );

    const signers = await listSigners(store.db);
    expect(signers).toHaveLength(5);
    expect(signers.find((s) => s.role === 'cfo')).toMatchObject({
      revoked_by: 'test-operator',
      revoke_reason: 'laptop stolen',
    });
    expect(await record(signed('cfo', { comments: 'again' }))).toEqual({
      ok: false,
      reason: `the key ${KEYS.cfo.keyId} (cfo, Frida Finance) was revoked at 2026-01-15T12:01:00.000Z by test-operator: laptop stolen`,
    });
    expect(
      await revokeSigner(deps, { keyId: KEYS.cfo.keyId, reason: 'again' }, { actor: 'x', now: clock.now() }),
    ).toMatchObject({ ok: false, reason: expect.stringMatching(/already revoked/) });
    expect(
      await addSigner(
        deps,
        { role: 'cfo', name: NAMES.cfo, publicKeyPem: KEYS.cfo.publicKeyPem },
        { actor: 'x', now: clock.now() },
      ),
    ).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/already registered .*revoked.*never reused/),
    });
    expect((await auditEntries('signer.revoked')).map((e) => e.details)).toEqual([
      { role: 'cfo', name: NAMES.cfo, keyId: KEYS.cfo.keyId, reason: 'laptop stolen', voidedSignatures: 1 },
    ]);

    // A new key for the same role signs again.
    const fresh = createKeyPair();
    expect(
      (
        await addSigner(
          deps,
          { role: 'cfo', name: NAMES.cfo, publicKeyPem: fresh.publicKeyPem },
          { actor: 'x', now: clock.now() },
        )
      ).ok,
    ).toBe(true);
    expect((await record(signed('cfo', {}, fresh))).ok).toBe(true);
  });

  it('a changed policy voids every signature, and says so', async () => {
    await registerAll();
    expect((await record(signed('cfo'))).ok).toBe(true);
    const { valid, invalid } = await validSignatures(store.db, testManifest({ policyHash: OTHER_POLICY }));
    expect(valid).toEqual([]);
    expect(invalid.map((i) => i.reason)).toEqual([
      'void: signed against policy aaaaaaaaaaaa…, and the policy has changed since (current bbbbbbbbbbbb…)',
    ]);
  });

  const otherSignature = signed('ceo').signature;
  const tampering: [string, (id: number) => string, string | RegExp][] = [
    [
      'the role column',
      (id) => `update signatures set role = 'ceo' where id = ${id}`,
      "the row's role ceo is not the key's registered role cfo",
    ],
    [
      'the name column',
      (id) => `update signatures set name = 'Mallory' where id = ${id}`,
      `the row's name "Mallory" is not the key's registered name "${NAMES.cfo}"`,
    ],
    [
      'the kind column',
      (id) => `update signatures set kind = 'amendment' where id = ${id}`,
      `the row's kind ("amendment") differs from the stored document's kind ("signoff")`,
    ],
    [
      'the gate column',
      (id) => `update signatures set gate = 6 where id = ${id}`,
      `the row's gate (6) differs from the stored document's gate (null)`,
    ],
    [
      'the item column',
      (id) => `update signatures set item = '6.roi' where id = ${id}`,
      `the row's item ("6.roi") differs from the stored document's item (null)`,
    ],
    [
      'the policy hash column',
      (id) => `update signatures set policy_hash = '${OTHER_POLICY}' where id = ${id}`,
      /^void: signed against policy bbbbbbbbbbbb…, and the policy has changed since/,
    ],
    [
      'the key id column (an unregistered key)',
      (id) => `update signatures set key_id = '${'e'.repeat(64)}' where id = ${id}`,
      `signed with the key ${'e'.repeat(64)}, which is not registered`,
    ],
    [
      'the signature column',
      (id) => `update signatures set signature = '${otherSignature}' where id = ${id}`,
      'the signature does not verify over the stored document (the document or the signature was altered)',
    ],
    [
      'the document (a comment)',
      (id) => `update signatures set document = replace(document, 'approved', 'rejected') where id = ${id}`,
      'the signature does not verify over the stored document (the document or the signature was altered)',
    ],
    [
      'the document (a field the columns also hold)',
      (id) =>
        `update signatures set document = replace(document, '"signoff"', '"amendment"') where id = ${id}`,
      `the row's kind ("signoff") differs from the stored document's kind ("amendment")`,
    ],
    [
      'the document (not JSON)',
      (id) => `update signatures set document = 'signed, honest' where id = ${id}`,
      /^the stored document is not JSON: /,
    ],
    [
      'the document (re-ordered, not canonical)',
      (id) =>
        `update signatures set document = replace(document, '{"comments"', '{ "comments"') where id = ${id}`,
      'the stored document is not in its canonical form',
    ],
    [
      'the document (an extra field)',
      (id) =>
        `update signatures set document = replace(document, '{"comments"', '{"approved":true,"comments"') where id = ${id}`,
      /^the stored document is malformed: \(document\): .*approved/,
    ],
    [
      "the signer's name",
      () => `update signers set name = 'Mallory' where role = 'cfo'`,
      `the row's name "${NAMES.cfo}" is not the key's registered name "Mallory"`,
    ],
    [
      "the signer's public key (swapped for another's)",
      () => `update signers set public_key = '${KEYS.ceo.publicKeyPem}' where role = 'cfo'`,
      'the signature does not verify over the stored document (the document or the signature was altered)',
    ],
    [
      "the signer's revocation columns (set by hand)",
      () => `update signers set revoked_at = 1, revoked_by = 'x', revoke_reason = 'y' where role = 'cfo'`,
      /^void: the key [0-9a-f]{64} \(cfo, Frida Finance\) was revoked at 1970-01-01T00:00:00.001Z by x: y$/,
    ],
  ];

  /** Run `statement` with the tables' triggers off, as the database's owner could. */
  async function withoutTriggers(statement: string) {
    if (backend.name === 'sqlite') {
      await sql.raw('drop trigger signers_only_revoked').execute(store.db);
      await sql.raw('drop trigger signatures_no_update').execute(store.db);
      await sql.raw(statement).execute(store.db);
    } else {
      await store.db.transaction().execute(async (trx) => {
        await sql.raw('alter table signers disable trigger user').execute(trx);
        await sql.raw('alter table signatures disable trigger user').execute(trx);
        await sql.raw(statement).execute(trx);
        await sql.raw('alter table signers enable trigger user').execute(trx);
        await sql.raw('alter table signatures enable trigger user').execute(trx);
      });
    }
  }

  it('the registry and the signatures are append-only: no delete, no edit, a revocation cannot be cleared', async () => {
    await registerAll();
    const result = await record(signed('cfo'));
    if (!result.ok) throw new Error(result.reason);
    for (const statement of [
      `delete from signatures where id = ${result.id}`,
      `update signatures set name = 'x' where id = ${result.id}`,
      `delete from signers where role = 'cfo'`,
      `update signers set name = 'Mallory' where role = 'cfo'`,
    ]) {
      await expect(sql.raw(statement).execute(store.db), statement).rejects.toThrow(/valhalla: /);
    }
    const cfo = (await listSigners(store.db)).find((s) => s.role === 'cfo')!;
    const revoked = await revokeSigner(
      deps,
      { keyId: cfo.key_id, reason: 'left' },
      { actor: 'test', now: clock.now() },
    );
    expect(revoked.ok).toBe(true);
    await expect(
      sql
        .raw(
          `update signers set revoked_at = null, revoked_by = null, revoke_reason = null where role = 'cfo'`,
        )
        .execute(store.db),
    ).rejects.toThrow(/a revocation is final/);
    expect(
      (await validSignatures(store.db, testManifest({ policyHash: POLICY }))).valid.filter(
        (r) => r.role === 'cfo',
      ),
    ).toEqual([]);
  });

  it.each(tampering)(
    'an UPDATE of %s shows up as invalid with its reason',
    async (what, statement, reason) => {
      await registerAll();
      const result = await record(signed('cfo'));
      expect((await record(signed('ceo'))).ok).toBe(true);
      if (!result.ok) throw new Error(result.reason);
      expect((await validSignatures(store.db, testManifest({ policyHash: POLICY }))).invalid).toEqual([]);
      if (what.includes('revocation')) {
        // A revocation is the one change the triggers let through (it only voids).
        await sql.raw(statement(result.id)).execute(store.db);
      } else {
        // The triggers refuse it …
        await expect(sql.raw(statement(result.id)).execute(store.db)).rejects.toThrow(
          /valhalla: a (signer|recorded signature)/,
        );
        // … so the attacker is someone who can switch them off (the database's owner): the check at
        // read time must still see it.
        await withoutTriggers(statement(result.id));
      }
      const { valid, invalid } = await validSignatures(store.db, testManifest({ policyHash: POLICY }));
      expect(valid.map((r) => r.role)).toEqual(['ceo']);
      expect(invalid).toHaveLength(1);
      expect(invalid[0]!.row.id).toBe(result.id);
      expect(invalid[0]!.reason).toMatch(reason);
    },
  );
});

describe.each(list)('the signing CLI on $name', (backend) => {
  it('keys create → signers add → signoff --out → signoff submit; attest; activate; signers list; revoke', async () => {
    const dir = tempDir();
    const env = testEnv(dir, { VALHALLA_DATABASE_URL: backend.databaseUrl(), VALHALLA_LOG_LEVEL: 'warn' });
    const cli = (...args: string[]) => runInProcess(args, { env, cwd: dir });
    const key = (role: SignerRole) => join(dir, role);
    expect((await cli('init')).code).toBe(0);

    // Keys: 0600 private key, the key id printed, never overwritten.
    const created = await cli('keys', 'create', '--out', key('cfo'));
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const cfoPub = readFileSync(`${key('cfo')}.pub`, 'utf8');
    const cfoKeyId = keyIdOf(cfoPub);
    expect(created.stdout).toContain(`key id ${cfoKeyId}`);
    expect(statSync(`${key('cfo')}.key`).mode & 0o777).toBe(0o600);
    const privateBefore = readFileSync(`${key('cfo')}.key`, 'utf8');
    const overwrite = await cli('keys', 'create', '--out', key('cfo'));
    expect(overwrite.code).toBe(3);
    expect(overwrite.stderr).toMatch(/cfo\.key exists: not overwritten/);
    expect(readFileSync(`${key('cfo')}.key`, 'utf8')).toBe(privateBefore);
    for (const role of ROLES.filter((r) => r !== 'cfo')) {
      expect((await cli('keys', 'create', '--out', key(role))).code).toBe(0);
    }

    // Signers.
    expect(
      (await cli('signers', 'add', '--role', 'cto', '--name', 'X', '--key', `${key('cfo')}.pub`)).code,
    ).toBe(2);
    const privateAsPublic = await cli(
      'signers',
      'add',
      '--role',
      'cfo',
      '--name',
      'X',
      '--key',
      `${key('cfo')}.key`,
    );
    expect(privateAsPublic.code).toBe(2);
    expect(privateAsPublic.stderr).toContain('this is a private key');
    for (const role of ROLES) {
      const added = await cli(
        'signers',
        'add',
        '--role',
        role,
        '--name',
        NAMES[role],
        '--key',
        `${key(role)}.pub`,
      );
      expect(added.stderr).toBe('');
      expect(added.code).toBe(0);
    }
    const twice = await cli(
      'signers',
      'add',
      '--role',
      'cfo',
      '--name',
      NAMES.cfo,
      '--key',
      `${key('cfo')}.pub`,
    );
    expect(twice.code).toBe(3);
    expect(twice.stderr).toMatch(/already registered/);

    // A stakeholder signs on their own machine (nothing recorded), the operator submits.
    const docPath = join(dir, 'cfo-signoff.json');
    const out = await cli(
      'signoff',
      '--role',
      'cfo',
      '--name',
      NAMES.cfo,
      '--key',
      `${key('cfo')}.key`,
      '--comments',
      'limits and ROI approved',
      '--out',
      docPath,
    );
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const doc = parseSignedDocument(readFileSync(docPath, 'utf8'));
    expect(doc).toMatchObject({
      kind: 'signoff',
      role: 'cfo',
      keyId: cfoKeyId,
      comments: 'limits and ROI approved',
    });
    expect(
      (
        await cli(
          'signoff',
          '--role',
          'cfo',
          '--name',
          NAMES.cfo,
          '--key',
          `${key('cfo')}.key`,
          '--out',
          docPath,
        )
      ).code,
    ).toBe(3);
    expect((await cli('signoff', '--role', 'cfo', '--name', NAMES.cfo)).code).toBe(2);
    expect(
      (
        await cli(
          'signoff',
          '--role',
          'cfo',
          '--name',
          NAMES.cfo,
          '--key',
          `${key('cfo')}.key`,
          '--date',
          'today',
        )
      ).code,
    ).toBe(2);

    const tamperedPath = join(dir, 'tampered.json');
    writeFileSync(tamperedPath, JSON.stringify({ ...doc, comments: 'limits waived' }));
    const tampered = await cli('signoff', 'submit', tamperedPath);
    expect(tampered.code).toBe(3);
    expect(tampered.stderr).toMatch(/sign-off refused: the signature does not verify/);
    const malformedPath = join(dir, 'malformed.json');
    writeFileSync(malformedPath, JSON.stringify({ ...doc, role: 'cto' }));
    const malformed = await cli('signoff', 'submit', malformedPath);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/invalid signed document: role: /);

    const early = await cli('activate', '--name', NAMES.ceo, '--key', `${key('ceo')}.key`);
    expect(early.code).toBe(3);
    expect(early.stderr).toMatch(/activation refused: .*missing: ceo, cfo, general_counsel/);

    const submitted = await cli('signoff', 'submit', docPath);
    expect(submitted.stderr).toBe('');
    expect(submitted.code).toBe(0);
    expect(submitted.stdout).toMatch(/^recorded sign-off #\d+ by Frida Finance \(cfo\)/);
    const duplicate = await cli('signoff', 'submit', docPath);
    expect(duplicate.code).toBe(3);
    expect(duplicate.stderr).toMatch(/already recorded/);

    // The others sign directly; a wrong name is refused.
    const wrongName = await cli(
      'signoff',
      '--role',
      'ceo',
      '--name',
      'Someone Else',
      '--key',
      `${key('ceo')}.key`,
    );
    expect(wrongName.code).toBe(3);
    expect(wrongName.stderr).toMatch(/registered to "Cora Chief"/);
    for (const role of ROLES.filter((r) => r !== 'cfo')) {
      const direct = await cli('signoff', '--role', role, '--name', NAMES[role], '--key', `${key(role)}.key`);
      expect(direct.stderr).toBe('');
      expect(direct.code).toBe(0);
    }

    // Attestations: the gate comes from the item.
    const attest = await cli(
      'attest',
      '--item',
      '6.roi',
      '--role',
      'cfo',
      '--name',
      NAMES.cfo,
      '--key',
      `${key('cfo')}.key`,
    );
    expect(attest.stderr).toBe('');
    expect(attest.code).toBe(0);
    expect(attest.stdout).toMatch(/recorded attestation #\d+ by Frida Finance \(cfo\) for item 6\.roi/);
    // Written to a file, what would be refused is refused at once, and no file is written.
    const verifiedOut = join(dir, 'verified.json');
    const refusedOut = await cli(
      'attest',
      '--item',
      '8.cfo',
      '--role',
      'cfo',
      '--name',
      NAMES.cfo,
      '--key',
      `${key('cfo')}.key`,
      '--out',
      verifiedOut,
    );
    expect(refusedOut.code).toBe(3);
    expect(refusedOut.stderr).toMatch(/attestation refused: item 8\.cfo is verified by the system/);
    expect(existsSync(verifiedOut)).toBe(false);
    const future = await cli(
      'signoff',
      '--role',
      'cfo',
      '--name',
      NAMES.cfo,
      '--key',
      `${key('cfo')}.key`,
      '--date',
      '2999-01-01',
      '--out',
      verifiedOut,
    );
    expect(future.code).toBe(3);
    expect(future.stderr).toMatch(/the date 2999-01-01 is in the future/);
    expect(existsSync(verifiedOut)).toBe(false);
    const gdprPath = join(dir, 'gdpr.json');
    expect(
      (
        await cli(
          'attest',
          '--item',
          '3.gdpr_checklist',
          '--role',
          'general_counsel',
          '--name',
          NAMES.general_counsel,
          '--key',
          `${key('general_counsel')}.key`,
          '--out',
          gdprPath,
        )
      ).code,
    ).toBe(0);
    expect(parseSignedDocument(readFileSync(gdprPath, 'utf8'))).toMatchObject({
      gate: 3,
      item: '3.gdpr_checklist',
    });
    expect((await cli('signoff', 'submit', gdprPath)).code).toBe(0);
    const verifiedItem = await cli(
      'attest',
      '--item',
      '8.cfo',
      '--role',
      'cfo',
      '--name',
      NAMES.cfo,
      '--key',
      `${key('cfo')}.key`,
    );
    expect(verifiedItem.code).toBe(3);
    expect(verifiedItem.stderr).toMatch(/verified by the system from evidence, not attested/);
    const wrongRole = await cli(
      'attest',
      '--item',
      '3.gdpr_checklist',
      '--role',
      'cfo',
      '--name',
      NAMES.cfo,
      '--key',
      `${key('cfo')}.key`,
    );
    expect(wrongRole.code).toBe(3);
    expect(wrongRole.stderr).toMatch(/attested by the general_counsel, not the cfo/);
    expect(
      (
        await cli(
          'attest',
          '--item',
          '6.vibes',
          '--role',
          'cfo',
          '--name',
          NAMES.cfo,
          '--key',
          `${key('cfo')}.key`,
        )
      ).code,
    ).toBe(2);

    // The activation, with another role's key refused.
    const byCfo = await cli('activate', '--name', NAMES.cfo, '--key', `${key('cfo')}.key`);
    expect(byCfo.code).toBe(3);
    expect(byCfo.stderr).toMatch(/the key is registered to the cfo, the document says ceo/);
    const activate = await cli(
      'activate',
      '--name',
      NAMES.ceo,
      '--key',
      `${key('ceo')}.key`,
      '--comments',
      'go',
    );
    expect(activate.stderr).toBe('');
    expect(activate.code).toBe(0);
    expect(activate.stdout).toMatch(/^recorded activation #\d+ by Cora Chief \(ceo\)/);

    // The list, then a revocation.
    const listed = await cli('signers', 'list', '--json');
    expect(listed.code).toBe(0);
    const { signers } = JSON.parse(listed.stdout) as {
      signers: { role: string; name: string; keyId: string; revokedAt: string | null }[];
    };
    expect(signers.map((s) => [s.role, s.name, s.revokedAt])).toEqual(ROLES.map((r) => [r, NAMES[r], null]));
    expect(signers[1]!.keyId).toBe(cfoKeyId);
    expect((await cli('signers', 'revoke', '--key-id', 'nope', '--reason', 'x')).code).toBe(2);
    const revoke = await cli('signers', 'revoke', '--key-id', cfoKeyId, '--reason', 'left the company');
    expect(revoke.code).toBe(0);
    expect(revoke.stdout).toMatch(/2 signature\(s\) made with it are void/);
    const table = await cli('signers', 'list');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ROLE\s+NAME\s+KEY ID\s+ADDED\s+REVOKED$/m);
    expect(table.stdout).toMatch(
      new RegExp(`^cfo\\s+Frida Finance\\s+${cfoKeyId}\\s+\\S+\\s+\\S+: left the company$`, 'm'),
    );

    // What the database holds now, re-verified.
    const opened = await openApp({ config: loadConfig({ env, cwd: dir }) });
    try {
      expect(doc.policyHash).toBe(opened.config.policyHash);
      const { valid, invalid } = await validSignatures(opened.store.db, await opened.releaseManifest());
      expect(valid.map((r) => `${r.kind}:${r.role}`).sort()).toEqual(
        [
          'activation:ceo',
          'attestation:general_counsel',
          'signoff:ceo',
          'signoff:general_counsel',
          'signoff:head_of_operations',
          'signoff:risk_officer',
        ].sort(),
      );
      expect(invalid.map((i) => `${i.row.kind}:${i.row.role}`)).toEqual(['signoff:cfo', 'attestation:cfo']);
      const actions = await opened.store.db.selectFrom('audit_log').select('action').orderBy('seq').execute();
      const count = (action: string) => actions.filter((a) => a.action === action).length;
      expect(count('signer.added')).toBe(5);
      expect(count('signer.revoked')).toBe(1);
      expect(count('signature.recorded')).toBe(8);
      // Tampered, early activation, duplicate, wrong name, verified item, wrong role, CFO activation;
      // unusable input (exit 2) never reaches the database.
      expect(count('signature.refused')).toBe(7);
    } finally {
      await opened.close();
    }
  });
});
