// The app's signing part: the registered signers (listed, added, revoked) and the signed documents
// recorded against this installation's release manifest, each audited under the configured operator.
import { addSigner, listSigners, recordSignature, revokeSigner, type SigningDeps } from '../gates/index.js';
import type { AppParts } from './parts.js';
import type { App } from './types.js';

export function signingPart(
  parts: AppParts,
  releaseManifest: App['releaseManifest'],
): Pick<App, 'listSigners' | 'addSigner' | 'revokeSigner' | 'recordSignature'> {
  const { store, audit, clock, config } = parts;
  const deps: SigningDeps = { db: store.db, dialect: store.dialect, audit };
  const context = () => ({ actor: config.operator, now: clock.now() });
  return {
    listSigners: () => listSigners(store.db),
    addSigner: (signer) => addSigner(deps, signer, context()),
    revokeSigner: (revocation) => revokeSigner(deps, revocation, context()),
    async recordSignature(doc) {
      const { actor, now } = context();
      return recordSignature(deps, doc, { actor, now, manifest: await releaseManifest() });
    },
  };
}
