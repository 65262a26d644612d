import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from './tool-env.js';
import { RegistryRequestError, type RegistryClient } from '../core/registry/registry-client.js';
import { TITLE_ANNOTATION } from '../core/state/format.js';
import type { PackagedState } from '../core/state/artifact.js';

/** What the builder knows of a push beyond the package. */
export interface PushOptions {
  /**
   * The manifest goes to `reference` only once this settles (the signature in place, the
   * package kept); the blobs upload meanwhile. A pusher that tags while pushing waits first.
   */
  tagAfter?: Promise<unknown>;
  /** The group's first version: nothing was published in this repository before (a hint; wrong, a blob only uploads again). */
  newRepository?: boolean;
}

/**
 * Puts a packaged state's blobs and manifest into the registry under `reference`. A pusher
 * that tags while pushing may produce other bytes than the package's: the builder reads
 * back what it pushed (see StateBuilder.pushThroughTag).
 */
export interface Pusher {
  readonly name: string;
  /** True when pushing also tags (a CLI pushes to a tag); false when it pushes by digest. */
  readonly tagsWhilePushing: boolean;
  push(repository: string, pkg: PackagedState, reference: string, opts?: PushOptions): Promise<void>;
}

/** How many repositories a pusher remembers holding the shared config (oldest forgotten first). */
const KNOWN_REPOSITORIES = 100_000;

/**
 * The distribution API in TypeScript, with the fewest requests a publish allows (README,
 * Benchmark): a blob made for this version is uploaded without a HEAD (POST, PUT), all
 * blobs at once; the shared config (the same `{}` in every version) is uploaded without a
 * HEAD into a new repository, HEADed once per repository afterwards and then taken as
 * there. A registry never drops it while a manifest names it, but one emptied by hand
 * answers the manifest PUT with MANIFEST_BLOB_UNKNOWN: the config is then pushed again
 * and the PUT made once more.
 */
export class BuiltinPusher implements Pusher {
  readonly name = 'builtin';
  readonly tagsWhilePushing = false;
  /** "<repository>@<digest>" of shared blobs this process saw in the registry. */
  private readonly known = new Set<string>();
  constructor(private readonly client: RegistryClient) {}

  async push(repository: string, pkg: PackagedState, reference: string, opts: PushOptions = {}): Promise<void> {
    const skipped = pkg.blobs.filter((b) => b.shared && this.known.has(`${repository}@${b.digest}`));
    await Promise.all(pkg.blobs.filter((b) => !skipped.includes(b)).map(async (b) => {
      const isNew = pkg.fresh && (!b.shared || opts.newRepository);
      await this.client.pushBlob(repository, b.bytes, { digest: b.digest, isNew });
      if (b.shared) this.remember(`${repository}@${b.digest}`);
    }));
    await opts.tagAfter;
    try {
      await this.client.putManifest(repository, reference, pkg.manifest, pkg.mediaType);
    } catch (err) {
      if (skipped.length === 0 || !(err instanceof RegistryRequestError) || !BLOB_MISSING.has(err.code ?? '')) throw err;
      for (const b of skipped) {
        this.known.delete(`${repository}@${b.digest}`);
        await this.client.pushBlob(repository, b.bytes, { digest: b.digest });
      }
      await this.client.putManifest(repository, reference, pkg.manifest, pkg.mediaType);
    }
  }

  private remember(key: string): void {
    this.known.delete(key);
    this.known.add(key);
    if (this.known.size > KNOWN_REPOSITORIES) this.known.delete(this.known.values().next().value!);
  }
}

/** What a registry answers to a manifest naming a blob it does not hold. */
const BLOB_MISSING = new Set(['MANIFEST_BLOB_UNKNOWN', 'BLOB_UNKNOWN']);

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

  async push(repository: string, pkg: PackagedState, reference: string, opts: PushOptions = {}): Promise<void> {
    await opts.tagAfter;
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
      await runTool('oras', args, { cwd: dir, input: this.credentials?.password ?? '' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
