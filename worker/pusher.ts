import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { RegistryRequestError, type RegistryClient } from '../core/registry/registry-client.js';
import { createdStamp, STATE_ARTIFACT_TYPE, STATE_FILE, STATE_LAYER_TYPE, type PackagedState } from './state-artifact.js';

/** Puts a packaged state's blobs and manifest into the registry under `reference`. */
export interface Pusher {
  readonly name: string;
  /** True when pushing also tags (a CLI pushes to a tag); false when it pushes by digest. */
  readonly tagsWhilePushing: boolean;
  push(repository: string, pkg: PackagedState, reference: string, state: { json: Buffer; created: Date }): Promise<void>;
}

/** The distribution API in TypeScript: blobs (HEAD before PUT), then the manifest. */
export class BuiltinPusher implements Pusher {
  readonly name = 'builtin';
  readonly tagsWhilePushing = false;
  constructor(private readonly client: RegistryClient) {}

  async push(repository: string, pkg: PackagedState, reference: string): Promise<void> {
    for (const b of pkg.blobs) await this.client.pushBlob(repository, b.bytes);
    await this.client.putManifest(repository, reference, pkg.manifest, pkg.mediaType);
  }
}

/**
 * `oras push` (STATE_PUSHER=oras, oras on PATH), for the "oci" layout. The created
 * annotation is pinned to the version's time, so oras produces the very manifest the
 * builtin path would; the digest is checked afterwards.
 */
export class OrasPusher implements Pusher {
  readonly name = 'oras';
  readonly tagsWhilePushing = true;
  constructor(private readonly client: RegistryClient, private readonly credentials?: { username: string; password: string }) {}

  async push(repository: string, pkg: PackagedState, reference: string, state: { json: Buffer; created: Date }): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'satellite-oras-'));
    try {
      await writeFile(join(dir, STATE_FILE), state.json);
      const args = [
        'push', `${this.client.host}/${repository}:${reference}`,
        '--artifact-type', STATE_ARTIFACT_TYPE,
        '--annotation', `org.opencontainers.image.created=${createdStamp(state.created)}`,
        ...(this.client.baseUrl.startsWith('http://') ? ['--plain-http'] : []),
        ...(this.credentials ? ['--username', this.credentials.username, '--password-stdin'] : []),
        `${STATE_FILE}:${STATE_LAYER_TYPE}`,
      ];
      await execa('oras', args, { cwd: dir, input: this.credentials?.password ?? '' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const pushed = await this.client.headManifest(repository, reference);
    if (pushed?.digest !== pkg.digest) {
      throw new RegistryRequestError(`oras pushed ${pushed?.digest ?? 'nothing'}, expected ${pkg.digest}`, 0, 'DIGEST_INVALID', false);
    }
  }
}
