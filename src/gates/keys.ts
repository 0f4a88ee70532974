/**
 * The Ed25519 keys that sign the go-live documents: making a key pair, naming a key (its key id),
 * reading PEM keys, and the SigningError a key or a document that cannot be used at all throws.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';

export type SigningErrorCode = 'INVALID_KEY' | 'KEY_MISMATCH' | 'INVALID_DOCUMENT';

/** A key or a document that cannot be used at all (as opposed to a refusal, which is a value). */
export class SigningError extends Error {
  override readonly name = 'SigningError';
  constructor(
    readonly code: SigningErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isSigningError(error: unknown): error is SigningError {
  return error instanceof SigningError;
}

/** A fresh Ed25519 key pair, as PEM (PKCS#8 private, SPKI public), with its key id. */
export function createKeyPair(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem,
    keyId: keyIdOfKey(publicKey),
  };
}

/** SHA-256 (hex) of the raw 32-byte Ed25519 public key: how documents and the signers table name a key. */
export function keyIdOf(publicKeyPem: string): string {
  return keyIdOfKey(loadPublicKey(publicKeyPem));
}

/** The public key as SPKI PEM, normalised (what the signers table stores). */
export function normalizePublicKey(publicKeyPem: string): string {
  return loadPublicKey(publicKeyPem).export({ type: 'spki', format: 'pem' }).toString();
}

/** The public half of an Ed25519 private key, as SPKI PEM (to name the key that signs). */
export function publicKeyOf(privateKeyPem: string): string {
  return createPublicKey(loadPrivateKey(privateKeyPem)).export({ type: 'spki', format: 'pem' }).toString();
}

export function keyIdOfKey(publicKey: KeyObject): string {
  const { x } = publicKey.export({ format: 'jwk' });
  const raw = Buffer.from(x ?? '', 'base64url');
  if (raw.length !== 32)
    throw new SigningError('INVALID_KEY', 'not an Ed25519 public key (raw key is not 32 bytes)');
  return createHash('sha256').update(raw).digest('hex');
}

export function loadPublicKey(pem: string): KeyObject {
  // createPublicKey would quietly derive the public half of a private key: refuse instead, so a
  // private key is never registered (and stored) by mistake.
  if (/PRIVATE KEY/.test(pem)) {
    throw new SigningError('INVALID_KEY', 'this is a private key: give the public key (the .pub file)');
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (cause) {
    throw new SigningError('INVALID_KEY', `not a readable public key PEM: ${(cause as Error).message}`, {
      cause,
    });
  }
  return requireEd25519(key, 'public');
}

export function loadPrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (cause) {
    throw new SigningError('INVALID_KEY', `not a readable private key PEM: ${(cause as Error).message}`, {
      cause,
    });
  }
  return requireEd25519(key, 'private');
}

function requireEd25519(key: KeyObject, which: 'public' | 'private'): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new SigningError(
      'INVALID_KEY',
      `the ${which} key is ${key.asymmetricKeyType ?? 'of an unknown type'}, not Ed25519`,
    );
  }
  return key;
}
