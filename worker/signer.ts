import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from './tool-env.js';
import { readSignatureLayers, signatureImage, signatureTag } from '../core/cosign/signature-image.js';
import { loadPrivateKey } from '../core/cosign/keys.js';
import { signPayload, simpleSigningPayload, verifySignatureLayer } from '../core/cosign/simple-signing.js';
import type { RegistryClient } from '../core/registry/registry-client.js';
import { isPem } from '../core/config.js';
import { Redactor } from './redact.js';

/** The signing key, read and decrypted once; its PEM is kept for the cosign CLI. */
export interface SigningKey {
  /** Where it was read from; undefined when COSIGN_KEY held the PEM itself. */
  path: string | undefined;
  pem: string;
  key: KeyObject;
}

/** COSIGN_KEY: a path, or the PEM itself. */
export async function loadSigningKey(pathOrPem: string, password: string): Promise<SigningKey> {
  const path = isPem(pathOrPem) ? undefined : pathOrPem;
  const pem = path === undefined ? pathOrPem : await readFile(path, 'utf8');
  return { path, pem, key: loadPrivateKey(pem, password) };
}

/** Attaches a cosign signature to a manifest digest in a repository of the state registry. */
export interface Signer {
  readonly name: string;
  /**
   * True when the signer reads the manifest it signs from the registry (the cosign CLI
   * resolves its reference there), so the manifest must be pushed, untagged, first.
   */
  readonly needsSubject: boolean;
  /**
   * `fresh`: the manifest was made by this attempt (a new version's), so no signature can be
   * attached to it yet: nothing is read first.
   */
  sign(repository: string, digest: string, opts?: { fresh?: boolean }): Promise<'signed' | 'already-signed'>;
}

/**
 * Signs in TypeScript, in cosign's legacy key-based format. Idempotent: a signature by this
 * key for this digest already attached (from an earlier attempt) is kept and nothing is
 * pushed; other signatures already there are kept too, as cosign does.
 */
export class KeySigner implements Signer {
  readonly name = 'builtin';
  readonly needsSubject = false;
  private readonly publicKey: KeyObject;

  constructor(private readonly client: RegistryClient, private readonly key: KeyObject) {
    this.publicKey = createPublicKey(key);
  }

  async sign(repository: string, digest: string, opts: { fresh?: boolean } = {}): Promise<'signed' | 'already-signed'> {
    const identity = `${this.client.host}/${repository}`;
    const existing = opts.fresh ? [] : await readSignatureLayers(this.client, repository, digest);
    const mine = existing.some((l) => verifySignatureLayer({
      key: this.publicKey, payload: l.payload, payloadDigest: l.digest, signatureB64: l.signatureB64, manifestDigest: digest, repository: identity,
    }).ok);
    if (mine) return 'already-signed';
    const payload = simpleSigningPayload(identity, digest);
    const image = signatureImage([
      ...existing.map((l) => ({ payload: l.payload, signatureB64: l.signatureB64 })),
      { payload, signatureB64: signPayload(this.key, payload) },
    ]);
    // Its config and payload at once: both are new bytes for a new digest.
    await Promise.all(image.blobs.map((b) => this.client.pushBlob(repository, b, { isNew: opts.fresh })));
    await this.client.putManifest(repository, signatureTag(digest), image.manifest, 'application/vnd.oci.image.manifest.v1+json');
    return 'signed';
  }
}

/**
 * Signs with the cosign CLI (SIGNER=cosign, cosign on PATH), key-based, without the
 * transparency log (edge sites cannot reach one). cosign v3 is told to keep the legacy
 * .sig format, which is what satellites and `cosign verify --key` here expect.
 *
 * No secret is on its command line (visible to every user in ps and /proc): the key's
 * password goes in COSIGN_PASSWORD, the registry credential in a docker config file of its
 * own (DOCKER_CONFIG, a private temporary directory removed afterwards), which cosign reads
 * like docker does. A failure is reported with the secrets redacted. Idempotent like
 * KeySigner: when a signature by this key for this digest is attached, cosign is not run
 * again (it would add a second signature layer).
 */
export class CosignCliSigner implements Signer {
  readonly name = 'cosign';
  readonly needsSubject = true;
  private versionArgs: Promise<string[]> | undefined;
  private readonly publicKey: KeyObject;
  private readonly redactor: Redactor;

  constructor(
    private readonly client: RegistryClient,
    /** The key's file; undefined: the key given as PEM, written for each run beside its docker config. */
    private readonly keyPath: string | undefined,
    key: KeyObject,
    private readonly password: string,
    private readonly credentials?: { username: string; password: string },
    private readonly pem?: string,
  ) {
    if (keyPath === undefined && pem === undefined) throw new Error('CosignCliSigner needs the key\'s path or its PEM');
    this.publicKey = createPublicKey(key);
    this.redactor = new Redactor([password], credentials);
  }

  private async extraArgs(): Promise<string[]> {
    this.versionArgs ??= runTool('cosign', ['version'], { reject: false }).then((r) =>
      /v3\./.test(`${r.stdout}${r.stderr}`) ? ['--new-bundle-format=false', '--use-signing-config=false'] : []);
    return this.versionArgs;
  }

  async sign(repository: string, digest: string, opts: { fresh?: boolean } = {}): Promise<'signed' | 'already-signed'> {
    const identity = `${this.client.host}/${repository}`;
    const existing = opts.fresh ? [] : await readSignatureLayers(this.client, repository, digest);
    if (existing.some((l) => verifySignatureLayer({
      key: this.publicKey, payload: l.payload, payloadDigest: l.digest, signatureB64: l.signatureB64, manifestDigest: digest, repository: identity,
    }).ok)) return 'already-signed';

    const ref = `${identity}@${digest}`;
    const insecure = this.client.baseUrl.startsWith('http://') ? ['--allow-http-registry=true', '--allow-insecure-registry=true'] : [];
    const dockerConfig = await mkdtemp(join(tmpdir(), 'satellite-cosign-'));
    try {
      const auths = this.credentials
        ? { [this.client.host]: { auth: Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64') } }
        : {};
      await writeFile(join(dockerConfig, 'config.json'), JSON.stringify({ auths }), { mode: 0o600 });
      let keyPath = this.keyPath;
      if (keyPath === undefined) {
        keyPath = join(dockerConfig, 'cosign.key');
        await writeFile(keyPath, this.pem!, { mode: 0o600 });
      }
      await runTool('cosign', ['sign', '--key', keyPath, '--tlog-upload=false', '--yes', ...insecure, ...(await this.extraArgs()), ref], {
        env: { COSIGN_PASSWORD: this.password, DOCKER_CONFIG: dockerConfig },
      });
    } catch (err) {
      throw this.failure(err);
    } finally {
      await rm(dockerConfig, { recursive: true, force: true });
    }
    return 'signed';
  }

  /** A new error saying what failed, with the tool's last words, secrets redacted; no argv. */
  private failure(err: unknown): Error {
    const e = err as { exitCode?: number; stderr?: unknown; code?: string; message?: string };
    if (e.code === 'ENOENT') return Object.assign(new Error('cosign is not on PATH'), { code: 'ENOENT' });
    const said = typeof e.stderr === 'string' ? e.stderr.trim().split('\n').slice(-3).join(' / ') : '';
    return this.redactor.error(new Error(`cosign sign failed (exit ${e.exitCode ?? '?'}): ${said || e.message || 'no output'}`));
  }
}
