import { expect } from 'chai';
import { createHash, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyError, loadPrivateKey, loadPublicKey, publicKeyPem } from '../../core/cosign/keys.js';
import { verifySignatureLayer } from '../../core/cosign/simple-signing.js';

// Real cosign output (../shared/fixtures/cosign, with provenance): the independent evidence
// that our verifier and key reader agree with cosign.
const FIXTURES = process.env.COSIGN_FIXTURES ?? join(process.cwd(), '..', 'shared', 'fixtures', 'cosign');
const read = (...p: string[]) => readFileSync(join(FIXTURES, ...p));
const text = (...p: string[]) => read(...p).toString('utf8').trim();
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Vector {
  type: string;
  expect_accept?: boolean;
  expect_decrypt?: boolean | null;
  expect_pkcs8?: boolean;
  wrong_key?: string;
}
const vectors: Record<string, Vector> = JSON.parse(read('vectors.json').toString()).vectors;

/** The image check as cosign does it: signature, then the digest claim against the manifest we hold. */
function verifyVector(dir: string, keyFile = 'key.pub', sigDir = '.') {
  const key = loadPublicKey(text(dir, keyFile));
  const payload = read(dir, sigDir, 'payload.json');
  const manifestDigest = existsSync(join(FIXTURES, dir, 'manifest.json')) ? sha256(read(dir, 'manifest.json')) : text(dir, 'signed-manifest-digest.txt');
  return verifySignatureLayer({ key, payload, signatureB64: text(dir, sigDir, 'signature.b64'), manifestDigest });
}

describe('cosign verification against real cosign output', () => {
  const positive = Object.entries(vectors).filter(([, v]) => v.type === 'signature' && v.expect_accept === true);
  const negative = Object.entries(vectors).filter(([, v]) => v.type === 'signature' && v.expect_accept === false);

  it('when the vectors are read, then there are positive and negative signature cases to check', () => {
    expect(positive.length).to.be.at.least(5);
    expect(negative.length).to.be.at.least(3);
  });

  for (const [name, v] of positive) {
    it(`when ${name} is verified with its key, then it is accepted`, () => {
      const verdict = verifyVector(name);
      expect(verdict, JSON.stringify(verdict)).to.deep.include({ ok: true });
    });
    if (v.wrong_key) {
      it(`when ${name} is verified with another key, then it is refused`, () => {
        expect(verifyVector(name, v.wrong_key!)).to.deep.include({ ok: false, reason: 'signature does not verify with the given key' });
      });
    }
    it(`when one byte of ${name}'s payload is flipped, then it is refused`, () => {
      const key = loadPublicKey(text(name, 'key.pub'));
      const payload = Buffer.from(read(name, 'payload.json'));
      payload[payload.length - 5] = payload[payload.length - 5]! ^ 0x01;
      const verdict = verifySignatureLayer({ key, payload, signatureB64: text(name, 'signature.b64'), manifestDigest: text(name, 'signed-manifest-digest.txt') });
      expect(verdict.ok).to.equal(false);
    });
    it(`when ${name} is checked against another manifest's digest, then it is refused`, () => {
      const key = loadPublicKey(text(name, 'key.pub'));
      const verdict = verifySignatureLayer({ key, payload: read(name, 'payload.json'), signatureB64: text(name, 'signature.b64'), manifestDigest: sha256(Buffer.from('another manifest')) });
      expect(verdict).to.deep.include({ ok: false });
      expect((verdict as { reason: string }).reason).to.match(/^payload claims/);
    });
  }

  for (const [name] of negative) {
    it(`when ${name} is verified, then it is refused`, () => {
      expect(verifyVector(name).ok).to.equal(false);
    });
  }

  it('when cimage-cosign-mixed is checked, then its signature by an unknown key is refused and its own accepted', () => {
    expect(verifyVector('cimage-cosign-mixed', 'key.pub', 'signature-1').ok).to.equal(false);
    expect(verifyVector('cimage-cosign-mixed').ok).to.equal(true);
  });

  it('when a keyless (certificate) signature is checked with a key, then it is refused unless the key is the certificate\'s', () => {
    const ourKey = loadPublicKey(text('cimage-cosign-valid', 'key.pub'));
    const dir = 'cimage-cosign-fulcio-rekor-valid';
    expect(verifySignatureLayer({ key: ourKey, payload: read(dir, 'payload.json'), signatureB64: text(dir, 'signature.b64'), manifestDigest: text(dir, 'signed-manifest-digest.txt') }).ok).to.equal(false);
  });
});

describe('cosign key files', () => {
  const keys = Object.entries(vectors).filter(([, v]) => v.type === 'encrypted-key');

  for (const [name, v] of keys) {
    if (v.expect_decrypt === true && v.expect_pkcs8 !== false) {
      it(`when ${name} is loaded with its password, then it gives the expected PKCS#8 key`, () => {
        const key = loadPrivateKey(text(name, 'encrypted.key'), read(name, 'password.txt').toString('utf8'));
        expect(key.export({ type: 'pkcs8', format: 'der' }).equals(read(name, 'decrypted.der'))).to.equal(true);
        expect(publicKeyPem(key).trim()).to.equal(text(name, 'derived.pub'));
        if (existsSync(join(FIXTURES, name, 'key.pub'))) {
          const published = createPublicKey(text(name, 'key.pub')).export({ type: 'spki', format: 'der' });
          expect(createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(published)).to.equal(true);
        }
      });
      it(`when ${name} is loaded with a wrong password, then the error says so`, () => {
        expect(() => loadPrivateKey(text(name, 'encrypted.key'), 'definitely-wrong')).to.throw(KeyError, /wrong password/);
      });
    }
  }

  it('when the key inside is SEC1 rather than PKCS#8, then it is refused with a clear error, as cosign does', () => {
    const dir = 'neg-key-cosign-pemcosigneckey-sec1';
    expect(() => loadPrivateKey(text(dir, 'encrypted.key'), read(dir, 'password.txt').toString('utf8'))).to.throw(KeyError, /SEC1/);
  });

  it('when the password is unknown, then guesses fail with a clear error, never a crash', () => {
    for (const guess of ['', 'password', 'test']) {
      expect(() => loadPrivateKey(text('key-cosign-ci-cosign-test-nopassword', 'encrypted.key'), guess)).to.throw(KeyError, /wrong password/);
    }
  });
});

describe('satellite keys generate', () => {
  it('when keys are generated, then cosign.key is an encrypted sigstore key (mode 600) that loads with COSIGN_PASSWORD and matches cosign.pub', async () => {
    const { mkdtemp, rm, stat } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { satellite } = await import('../support/run.js');
    const dir = await mkdtemp(join(tmpdir(), 'satellite-keygen-'));
    try {
      await satellite(['keys', 'generate', '--dir', dir], { COSIGN_PASSWORD: 'correct horse' });
      const pem = readFileSync(join(dir, 'cosign.key'), 'utf8');
      expect(pem).to.match(/^-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n/);
      expect((await stat(join(dir, 'cosign.key'))).mode & 0o777).to.equal(0o600);
      const key = loadPrivateKey(pem, 'correct horse');
      expect(publicKeyPem(key)).to.equal(readFileSync(join(dir, 'cosign.pub'), 'utf8'));
      expect(() => loadPrivateKey(pem, 'wrong')).to.throw(KeyError, /wrong password/);
      // A second run does not overwrite the pair.
      await satellite(['keys', 'generate', '--dir', dir], { COSIGN_PASSWORD: 'x' }).then(() => expect.fail('overwrote'), (e: { stderr: string }) => expect(e.stderr).to.include('exists'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('when the key is a plain PKCS#8 PEM, then it loads without a password; a SEC1 PEM is refused clearly', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pkcs8Pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(loadPrivateKey(pkcs8Pem, '').asymmetricKeyType).to.equal('ec');
    const sec1Pem = privateKey.export({ type: 'sec1', format: 'pem' }).toString();
    expect(() => loadPrivateKey(sec1Pem, '')).to.throw(KeyError, /SEC1/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(() => loadPrivateKey(rsa, '')).to.throw(KeyError, /P-256/);
  });
});
