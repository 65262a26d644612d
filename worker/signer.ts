import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { readSignatureLayers, signatureImage, signatureTag } from '../core/cosign/signature-image.js';
import { loadPrivateKey } from '../core/cosign/keys.js';
import { signPayload, simpleSigningPayload, verifySignatureLayer } from '../core/cosign/simple-signing.js';
import type { RegistryClient } from '../core/registry/registry-client.js';

/** The signing key, read and decrypted once; its path is kept for the cosign CLI. */
export interface SigningKey {
  path: string;
  key: KeyObject;
}

export async function loadSigningKey(path: string, password: string): Promise<SigningKey> {
  return { path, key: loadPrivateKey(await readFile(path, 'utf8'), password) };
}

/** Attaches a cosign signature to a manifest digest in a repository of the state registry. */
export interface Signer {
  readonly name: string;
  sign(repository: string, digest: string): Promise<'signed' | 'already-signed'>;
}

/**
 * Signs in TypeScript, in cosign's legacy key-based format. Idempotent: a signature by this
 * key for this digest already attached (from an earlier attempt) is kept and nothing is
 * pushed; other signatures already there are kept too, as cosign does.
 */
export class KeySigner implements Signer {
  readonly name = 'builtin';
  private readonly publicKey: KeyObject;

  constructor(private readonly client: RegistryClient, private readonly key: KeyObject) {
    this.publicKey = createPublicKey(key);
  }

  async sign(repository: string, digest: string): Promise<'signed' | 'already-signed'> {
    const identity = `${this.client.host}/${repository}`;
    const existing = await readSignatureLayers(this.client, repository, digest);
    const mine = existing.some((l) => verifySignatureLayer({
      key: this.publicKey, payload: l.payload, payloadDigest: l.digest, signatureB64: l.signatureB64, manifestDigest: digest, repository: identity,
    }).ok);
    if (mine) return 'already-signed';
    const payload = simpleSigningPayload(identity, digest);
    const image = signatureImage([
      ...existing.map((l) => ({ payload: l.payload, signatureB64: l.signatureB64 })),
      { payload, signatureB64: signPayload(this.key, payload) },
    ]);
    for (const b of image.blobs) await this.client.pushBlob(repository, b);
    await this.client.putManifest(repository, signatureTag(digest), image.manifest, 'application/vnd.oci.image.manifest.v1+json');
    return 'signed';
  }
}

/**
 * Signs with the cosign CLI (SIGNER=cosign, cosign on PATH), key-based, without the
 * transparency log (edge sites cannot reach one). cosign v3 is told to keep the legacy
 * .sig format, which is what satellites and `cosign verify --key` here expect.
 */
export class CosignCliSigner implements Signer {
  readonly name = 'cosign';
  private versionArgs: Promise<string[]> | undefined;

  constructor(
    private readonly client: RegistryClient,
    private readonly keyPath: string,
    private readonly password: string,
    private readonly credentials?: { username: string; password: string },
  ) {}

  private async extraArgs(): Promise<string[]> {
    this.versionArgs ??= execa('cosign', ['version'], { reject: false }).then((r) =>
      /v3\./.test(`${r.stdout}${r.stderr}`) ? ['--new-bundle-format=false', '--use-signing-config=false'] : []);
    return this.versionArgs;
  }

  async sign(repository: string, digest: string): Promise<'signed' | 'already-signed'> {
    const ref = `${this.client.host}/${repository}@${digest}`;
    const insecure = this.client.baseUrl.startsWith('http://') ? ['--allow-http-registry=true', '--allow-insecure-registry=true'] : [];
    const creds = this.credentials ? ['--registry-username', this.credentials.username, '--registry-password', this.credentials.password] : [];
    await execa('cosign', ['sign', '--key', this.keyPath, '--tlog-upload=false', '--yes', ...insecure, ...creds, ...(await this.extraArgs()), ref], {
      env: { COSIGN_PASSWORD: this.password },
    });
    return 'signed';
  }
}
