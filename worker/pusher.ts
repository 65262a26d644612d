import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { toolEnvironment } from './tool-env.js';
import type { RegistryClient } from '../core/registry/registry-client.js';
import { TITLE_ANNOTATION } from '../core/state/format.js';
import type { PackagedState } from '../core/state/artifact.js';

/**
 * Puts a packaged state's blobs and manifest into the registry under `reference`. A pusher
 * that tags while pushing may produce other bytes than the package's: the builder reads
 * back what it pushed (see StateBuilder.pushThroughTag).
 */
export interface Pusher {
  readonly name: string;
  /** True when pushing also tags (a CLI pushes to a tag); false when it pushes by digest. */
  readonly tagsWhilePushing: boolean;
  push(repository: string, pkg: PackagedState, reference: string): Promise<void>;
}

/** The distribution API in TypeScript: blobs (HEAD before PUT), then the manifest. */
export class BuiltinPusher implements Pusher {
  readonly name = 'builtin';
  readonly tagsWhilePushing = false;
  constructor(private readonly client: RegistryClient) {}

  async push(repository: string, pkg: PackagedState, reference: string): Promise<void> {
    for (const b of pkg.blobs) await this.client.pushBlob(repository, b.bytes, { digest: b.digest, isNew: pkg.fresh && !b.shared });
    await this.client.putManifest(repository, reference, pkg.manifest, pkg.mediaType);
  }
}

/**
 * `oras push` (STATE_PUSHER=oras, oras on PATH), for the "oci" layout: each layer of the
 * package written as the file its title names and pushed with its media type, the other
 * annotations (and the manifest's created time) given in an annotation file, so oras
 * produces the very manifest the builtin path would; if it does not, the builder signs and
 * tags the one it did produce.
 */
export class OrasPusher implements Pusher {
  readonly name = 'oras';
  readonly tagsWhilePushing = true;
  constructor(private readonly client: RegistryClient, private readonly credentials?: { username: string; password: string }) {}

  async push(repository: string, pkg: PackagedState, reference: string): Promise<void> {
    const doc = JSON.parse(pkg.manifest.toString('utf8')) as {
      artifactType: string;
      layers: { mediaType: string; digest: string; annotations: Record<string, string> }[];
      annotations: Record<string, string>;
    };
    const dir = await mkdtemp(join(tmpdir(), 'satellite-oras-'));
    try {
      const annotations: Record<string, Record<string, string>> = { $manifest: doc.annotations };
      const files: string[] = [];
      for (const layer of doc.layers) {
        const { [TITLE_ANNOTATION]: title, ...rest } = layer.annotations;
        const bytes = pkg.blobs.find((b) => b.digest === layer.digest)?.bytes;
        if (!title || !bytes) throw new Error(`layer ${layer.digest} has no title or no bytes`);
        await writeFile(join(dir, title), bytes);
        annotations[title] = rest;
        files.push(`${title}:${layer.mediaType}`);
      }
      await writeFile(join(dir, 'annotations.json'), JSON.stringify(annotations));
      const args = [
        'push', `${this.client.host}/${repository}:${reference}`,
        '--artifact-type', doc.artifactType,
        '--annotation-file', 'annotations.json',
        ...(this.client.baseUrl.startsWith('http://') ? ['--plain-http'] : []),
        ...(this.credentials ? ['--username', this.credentials.username, '--password-stdin'] : []),
        ...files,
      ];
      await execa('oras', args, { cwd: dir, input: this.credentials?.password ?? '', env: toolEnvironment(), extendEnv: false });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
