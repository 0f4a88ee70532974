/**
 * Signing on the signer's own machine, without an installation (`valhalla signoff sign --out`,
 * `--manifest`, `valhalla amend --out`): read a release manifest written by `gates manifest --out`,
 * raise its limits for an amendment, and sign. Pure: the files are the command's, the recording is
 * `recordSignature`'s (which checks everything again).
 */
import { fieldsRefusal, type SignedDocument, type SignedFields, signDocument } from './document.js';
import { keyIdOf, publicKeyOf } from './keys.js';
import { type ManifestLimits, manifestSchema, type ReleaseManifest } from './manifest.js';

export type Refusable<T> = { ok: true; value: T } | { ok: false; problem: string };

/**
 * A release manifest from a file's text: the manifest itself, or `gates manifest --json`'s output
 * (the manifest is its `document`).
 */
export function readManifestText(text: string, file: string): Refusable<ReleaseManifest> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, problem: `the release manifest ${file} is not JSON: ${(error as Error).message}` };
  }
  const inner = (value as { document?: unknown } | null)?.document;
  const parsed = manifestSchema.safeParse(typeof inner === 'object' && inner !== null ? inner : value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(manifest)'}: ${i.message}`);
    return { ok: false, problem: `${file} is not a release manifest: ${problems.join('; ')}` };
  }
  return { ok: true, value: parsed.data as ReleaseManifest };
}

/**
 * The manifest an amendment approves: `base` with `changes` over the limits approved now (not the
 * running ones: a limit lowered for a while must not lower the approval with it). Above a hard
 * maximum: refused.
 */
export function amendedManifest(
  base: ReleaseManifest,
  approved: ManifestLimits | null,
  changes: Partial<ManifestLimits>,
): Refusable<ReleaseManifest> {
  const manifest = { ...base, limits: { ...(approved ?? base.limits), ...changes } };
  const caps = manifestSchema.shape.limits.safeParse(manifest.limits);
  if (!caps.success) {
    const problems = caps.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    return { ok: false, problem: `above the hard maximum: ${problems.join('; ')}` };
  }
  return { ok: true, value: manifest };
}

/**
 * Complete and sign `fields` with a private key (throws SigningError for an unusable key). With
 * `checkNow`, a document `recordSignature` would refuse is refused here already (a document written
 * to a file is recorded later, elsewhere; one recorded at once is checked, and its refusal audited,
 * by `recordSignature`).
 */
export function signFields(
  fields: Omit<SignedFields, 'keyId' | 'policyHash' | 'date'>,
  privateKeyPem: string,
  options: { date?: string; now: number; checkNow: boolean },
): Refusable<SignedDocument> {
  const complete: SignedFields = {
    ...fields,
    date: options.date ?? new Date(options.now).toISOString().slice(0, 10),
    policyHash: fields.manifest.policyHash,
    keyId: keyIdOf(publicKeyOf(privateKeyPem)),
  };
  const problem = options.checkNow ? fieldsRefusal(complete, options.now) : null;
  if (problem !== null) return { ok: false, problem };
  return { ok: true, value: signDocument(complete, privateKeyPem) };
}
