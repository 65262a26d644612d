import type { Config } from '../core/config.js';
import { signatureTag } from '../core/cosign/signature-image.js';
import type { Logger } from '../core/logger.js';
import type { RegistryClient } from '../core/registry/registry-client.js';
import type { ArtifactStore } from '../core/store/artifact-store.js';
import type { StateStore } from '../core/store/state-store.js';
import type { UploadStore } from '../core/store/upload-store.js';

/**
 * Housekeeping: removes from the registry the published versions of each group beyond the
 * newest STATE_KEEP_VERSIONS (the manifest, which takes its version tag with it, and its
 * signature) and the versions abandoned after being tagged, forgets tombstones past their
 * retention and published changes past theirs, and drops abandoned upload sessions.
 */
export class Pruner {
  constructor(
    private readonly artifacts: ArtifactStore,
    private readonly states: StateStore,
    private readonly uploads: UploadStore,
    private readonly client: RegistryClient,
    private readonly config: Pick<Config, 'stateKeepVersions' | 'tombstoneRetentionHours' | 'changeLogRetentionHours'>,
    private readonly log: Logger,
  ) {}

  async pruneAll(): Promise<{ versions: number; tombstones: number; uploads: number; changes: number }> {
    let versions = 0;
    // Published versions beyond the newest STATE_KEEP_VERSIONS; and a version tagged v<N>
    // whose build was superseded before `latest` moved (abandoned): nothing should name it,
    // so its manifest (and tag) and signature go.
    for (const old of await this.states.toPrune(this.config.stateKeepVersions)) {
      if (old.manifestDigest) await this.removeFromRegistry(old.repository, old.manifestDigest);
      await this.states.markPruned(old.group, old.version);
      versions++;
    }
    const tombstones = await this.artifacts.purgeExpiredTombstones(this.config.tombstoneRetentionHours);
    // Sessions idle past UPLOAD_IDLE_MINUTES (the endpoint already ignores them).
    const uploads = await this.uploads.expireIdle();
    const changes = await this.states.pruneChangeLog(this.config.changeLogRetentionHours);
    if (versions + tombstones + uploads + changes > 0) this.log.info({ versions, tombstones, uploads, changes }, 'pruned');
    return { versions, tombstones, uploads, changes };
  }

  /**
   * The version first, its signature after: a half-done prune leaves an orphan signature,
   * never a version reachable without one. Deleting by digest takes the version's tags along.
   */
  private async removeFromRegistry(repository: string, manifestDigest: string): Promise<void> {
    const sig = await this.client.headManifest(repository, signatureTag(manifestDigest));
    await this.client.deleteManifest(repository, manifestDigest);
    if (sig?.digest) await this.client.deleteManifest(repository, sig.digest);
  }
}
