/**
 * What the gates say: each item's status, each gate's, the release manifest's, and the whole report
 * (`valhalla gates verify|status|report`, the dashboard, the guard's clearance).
 */
import type { SignerRole } from '../store/index.js';
import type { ManifestLimits, ReleaseManifest } from './manifest.js';

export type ItemState = 'ok' | 'missing' | 'invalid';

export interface ItemStatus {
  gate: number;
  id: string;
  text: string;
  kind: 'verified' | 'attested';
  /** The role that signs it (attested items and sign-offs). */
  role: SignerRole | null;
  state: ItemState;
  /** The evidence, or what is missing or wrong. */
  detail: string;
  signer: string | null;
  /** When the evidence was recorded or the document signed (ISO date or time). */
  date: string | null;
}

export interface GateStatus {
  gate: number;
  title: string;
  ok: boolean;
  items: ItemStatus[];
}

/** The release manifest Phase 4 would run with here, and what keeps it from running. */
export interface ManifestStatus {
  /** SHA-256 of the running manifest's canonical JSON; null without an installation id. */
  hash: string | null;
  document: ReleaseManifest | null;
  /** The limits the valid documents approve, and by what (sign-offs or a CFO amendment). */
  approvedLimits: ManifestLimits | null;
  approvedBy: string | null;
  /** Each reason Phase 4 may not run this manifest: differences, limits above approval, monitoring off. */
  problems: string[];
}

export interface GatesReport {
  at: string;
  policyHash: string;
  manifest: ManifestStatus;
  gates: GateStatus[];
  activation: { state: ItemState; detail: string; signer: string | null; date: string | null };
  /** Every item of every gate ok and the CEO's activation recorded: Phase 4 may start. */
  cleared: boolean;
  /** One line per thing missing or invalid. */
  missing: string[];
}
