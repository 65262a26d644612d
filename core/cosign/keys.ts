import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, scryptSync, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';

// cosign's key files. `cosign generate-key-pair` writes the private key as PEM labelled
// "ENCRYPTED SIGSTORE PRIVATE KEY" (older releases: "ENCRYPTED COSIGN PRIVATE KEY") whose
// body is base64 of a JSON envelope: scrypt parameters and salt, a nacl/secretbox nonce and
// the ciphertext of a PKCS#8 DER key. The public key is an ordinary PKIX "PUBLIC KEY" PEM.

export class KeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyError';
  }
}

const ENCRYPTED_LABELS = ['ENCRYPTED SIGSTORE PRIVATE KEY', 'ENCRYPTED COSIGN PRIVATE KEY'];

interface Envelope {
  kdf: { name: string; params: { N: number; r: number; p: number }; salt: string };
  cipher: { name: string; nonce: string };
  ciphertext: string;
}

function pemBlocks(pem: string): { label: string; der: Buffer }[] {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  const out: { label: string; der: Buffer }[] = [];
  for (let m = re.exec(pem); m; m = re.exec(pem)) out.push({ label: m[1]!, der: Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64') });
  return out;
}

function toPem(label: string, body: Buffer): string {
  const b64 = body.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

function requireP256(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new KeyError(`${what} must be an ECDSA P-256 key (what cosign generate-key-pair makes), got ${key.asymmetricKeyType}`);
  }
  return key;
}

function pkcs8(der: Buffer): KeyObject {
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch {
    // cosign marshals with x509.MarshalPKCS8PrivateKey and refuses anything else on load.
    let sec1 = false;
    try {
      createPrivateKey({ key: der, format: 'der', type: 'sec1' });
      sec1 = true;
    } catch {
      // neither
    }
    throw new KeyError(sec1
      ? 'the decrypted key is a SEC1 "EC PRIVATE KEY", not PKCS#8; cosign refuses such keys too — re-create it with `satellite keys generate` or `cosign generate-key-pair`'
      : 'the decrypted key is not a PKCS#8 private key');
  }
}

function decryptEnvelope(body: Buffer, password: string): Buffer {
  let env: Envelope;
  try {
    env = JSON.parse(body.toString('utf8')) as Envelope;
  } catch {
    throw new KeyError('the encrypted key is not cosign\'s JSON envelope');
  }
  if (env?.kdf?.name !== 'scrypt' || env?.cipher?.name !== 'nacl/secretbox') {
    throw new KeyError(`unsupported key encryption ${env?.kdf?.name}/${env?.cipher?.name}; expected scrypt/nacl/secretbox`);
  }
  const { N, r, p } = env.kdf.params;
  const key = scryptSync(Buffer.from(password, 'utf8'), Buffer.from(env.kdf.salt, 'base64'), 32, {
    N, r, p, maxmem: 256 * N * r + 1024 * 1024,
  });
  const plain = nacl.secretbox.open(
    new Uint8Array(Buffer.from(env.ciphertext, 'base64')),
    new Uint8Array(Buffer.from(env.cipher.nonce, 'base64')),
    new Uint8Array(key),
  );
  if (!plain) throw new KeyError('cannot decrypt the private key: wrong password (COSIGN_PASSWORD)');
  return Buffer.from(plain);
}

/** Loads a signing key: cosign's encrypted PEM (either label) or a plain PKCS#8 PEM. */
export function loadPrivateKey(pem: string, password: string): KeyObject {
  const blocks = pemBlocks(pem);
  const block = blocks.find((b) => ENCRYPTED_LABELS.includes(b.label) || b.label === 'PRIVATE KEY' || b.label === 'EC PRIVATE KEY');
  if (!block) throw new KeyError(`no private key in the file (PEM labels found: ${blocks.map((b) => b.label).join(', ') || 'none'})`);
  if (block.label === 'EC PRIVATE KEY') return requireP256(pkcs8(block.der), 'the signing key');
  const der = ENCRYPTED_LABELS.includes(block.label) ? decryptEnvelope(block.der, password) : block.der;
  return requireP256(pkcs8(der), 'the signing key');
}

export function loadPublicKey(pem: string): KeyObject {
  try {
    return requireP256(createPublicKey({ key: pem, format: 'pem' }), 'the public key');
  } catch (err) {
    if (err instanceof KeyError) throw err;
    throw new KeyError(`not a PEM public key: ${(err as Error).message}`);
  }
}

export function publicKeyPem(key: KeyObject): string {
  return createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
}

/** scrypt cost of `cosign generate-key-pair` (sigstore's encrypted key format). */
const SCRYPT = { N: 65536, r: 8, p: 1 };

/** A new P-256 key pair in cosign's files: encrypted private key and PKIX public key. */
export function generateCosignKeyPair(password: string, cost = SCRYPT): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const der = privateKey.export({ type: 'pkcs8', format: 'der' });
  const salt = randomBytes(32);
  const nonce = randomBytes(24);
  const key = scryptSync(Buffer.from(password, 'utf8'), salt, 32, { ...cost, maxmem: 256 * cost.N * cost.r + 1024 * 1024 });
  const ciphertext = nacl.secretbox(new Uint8Array(der), new Uint8Array(nonce), new Uint8Array(key));
  const envelope: Envelope = {
    kdf: { name: 'scrypt', params: cost, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: Buffer.from(ciphertext).toString('base64'),
  };
  return {
    privatePem: toPem('ENCRYPTED SIGSTORE PRIVATE KEY', Buffer.from(JSON.stringify(envelope))),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
