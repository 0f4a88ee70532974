import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { SandboxError } from './errors.js';

/** A PEM key and certificate for the HTTPS server; the certificate is also the clients' CA. */
export interface SandboxCertificate {
  key: string;
  cert: string;
}

export const KEY_FILE = 'sandbox-key.pem';
export const CERT_FILE = 'sandbox-cert.pem';

const VALIDITY_DAYS = 825;
const DAY_MS = 86_400_000;
/** A cached certificate this close to its end is replaced, so a running sandbox never sees it expire. */
const RENEW_BEFORE_MS = 7 * DAY_MS;

/**
 * A self-signed certificate for `localhost` and `127.0.0.1` (subjectAltName), RSA 2048 so that a
 * TLS 1.1 server can use it too. Not a CA certificate: clients trust it directly as their `ca`.
 */
export async function createSelfSignedCertificate(now: number): Promise<SandboxCertificate> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: new Date(now - DAY_MS),
    notAfterDate: new Date(now + VALIDITY_DAYS * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}

/**
 * The certificate cached in `dir`, made on first use (key file mode 0600), so restarts keep the
 * same CA and clients configured with it keep working. A cached pair that is expiring is renewed;
 * one that is unreadable or mismatched is an error (never silently replaced: clients trust it).
 */
export async function loadOrCreateCertificate(
  dir: string,
  now: number,
): Promise<SandboxCertificate & { certFile: string }> {
  const keyFile = join(dir, KEY_FILE);
  const certFile = join(dir, CERT_FILE);
  if (existsSync(keyFile) && existsSync(certFile)) {
    const cached = readCertificate(keyFile, certFile);
    if (Date.parse(new X509Certificate(cached.cert).validTo) - now > RENEW_BEFORE_MS) {
      return { ...cached, certFile };
    }
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const made = await createSelfSignedCertificate(now);
  writeAtomically(keyFile, made.key, 0o600);
  writeAtomically(certFile, made.cert, 0o644);
  return { ...made, certFile };
}

function readCertificate(keyFile: string, certFile: string): SandboxCertificate {
  try {
    const key = readFileSync(keyFile, 'utf8');
    const cert = readFileSync(certFile, 'utf8');
    if (!new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) {
      throw new Error('the key does not belong to the certificate');
    }
    return { key, cert };
  } catch (cause) {
    throw new SandboxError(
      'CERTIFICATE_INVALID',
      `cannot use the sandbox certificate in ${certFile} and ${keyFile}: ${(cause as Error).message}; delete both files to make a new one (clients must then trust the new certificate)`,
      { cause },
    );
  }
}

function writeAtomically(file: string, content: string, mode: number): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, content, { mode });
  chmodSync(temporary, mode); // the umask may have narrowed or the file may have existed
  renameSync(temporary, file);
}
