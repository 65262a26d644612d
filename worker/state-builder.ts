import type { Logger } from '../core/logger.js';
import type { RegistryClient } from '../core/registry/registry-client.js';
import { buildState, contentDigest, renderState } from '../core/state/render.js';
import type { ArtifactStore } from '../core/store/artifact-store.js';
import type { StateStore, StateVersion } from '../core/store/state-store.js';
import type { Pusher } from './pusher.js';
import type { Signer } from './signer.js';
import { packageState, stateRepository, versionTag, type PackagedState, type StateLayout } from './state-artifact.js';

export interface BuildResult {
  group: string;
  result: 'published' | 'unchanged' | 'repaired' | 'superseded';
  version: number;
  digest: string;
  artifacts: number;
}

export interface StateBuilderOptions {
  imageRegistry: string;
  stateProject: string;
  layout: StateLayout;
  tombstoneRetentionHours: number;
}

/**
 * Turns a group's records into its signed state in the registry. Every step is idempotent
 * by digest, so a retry after any failure converges on the same single version:
 *
 *   note the newest change → render → allocate a version (or find the content already
 *   published) → package → push by digest → sign → immutable version tag → `latest` →
 *   mark published → mark the group built up to the change noted first.
 *
 * `latest` moves last, so a satellite never sees an unsigned or half-pushed state; the group
 * is marked built only once `latest` holds its changes, so the reconcile pass rebuilds any
 * group whose builds all failed, however they failed.
 */
export class StateBuilder {
  constructor(
    private readonly artifacts: ArtifactStore,
    private readonly states: StateStore,
    private readonly client: RegistryClient,
    private readonly pusher: Pusher,
    private readonly signer: Signer,
    private readonly options: StateBuilderOptions,
    private readonly log: Logger,
  ) {}

  async build(group: string): Promise<BuildResult> {
    const point = await this.states.buildPoint(group);
    const rows = await this.artifacts.listGroup(group, this.options.tombstoneRetentionHours);
    const state = buildState(group, this.options.imageRegistry, rows);
    const repository = stateRepository(this.options.stateProject, group);
    const allocation = await this.states.allocate(group, contentDigest(state), this.options.layout, repository, state.artifacts.length);
    const version = allocation.kind === 'unchanged' ? allocation.current : allocation.version;
    const json = Buffer.from(renderState(state, version.version));
    const pkg = packageState(this.options.layout, json, version.createdAt);
    const summary = { group, version: version.version, digest: pkg.digest, artifacts: state.artifacts.length };

    if (allocation.kind === 'unchanged') {
      // Nothing new to publish; only make sure `latest` still names it (a registry
      // garbage-collected or restored from backup is put right on the next pass).
      const latest = await this.client.headManifest(repository, 'latest');
      if (latest?.digest !== pkg.digest) {
        this.log.warn({ group, found: latest?.digest ?? null, expected: pkg.digest }, 'latest does not name the published state; publishing it again');
        await this.publish(group, repository, pkg, version, json);
      }
      await this.states.markBuilt(group, point);
      return { ...summary, result: latest?.digest === pkg.digest ? 'unchanged' : 'repaired' };
    }
    await this.states.setManifestDigest(group, version.version, pkg.digest);
    if (!(await this.publish(group, repository, pkg, version, json))) {
      // A newer build allocated a newer version meanwhile: it publishes, this one stops
      // short of `latest` (its version tag is removed by the pruner).
      this.log.warn({ group, version: version.version }, 'a newer version superseded this build; latest left to it');
      return { ...summary, result: 'superseded' };
    }
    await this.states.markPublished(group, version.version, pkg.digest);
    await this.states.markBuilt(group, point);
    return { ...summary, result: 'published' };
  }

  /** Pushes, signs and tags; false when a newer version superseded this one before `latest` moved. */
  private async publish(group: string, repository: string, pkg: PackagedState, version: StateVersion, json: Buffer): Promise<boolean> {
    const tag = versionTag(version.version);
    const source = { json, created: version.createdAt };
    if (this.pusher.tagsWhilePushing) {
      // Sign first (the digest is known before the push), so the version tag never names
      // an unsigned manifest.
      await this.signer.sign(repository, pkg.digest);
      await this.pusher.push(repository, pkg, tag, source);
    } else {
      await this.pusher.push(repository, pkg, pkg.digest, source);
      await this.signer.sign(repository, pkg.digest);
      await this.client.putManifest(repository, tag, pkg.manifest, pkg.mediaType);
    }
    if (!(await this.states.isCurrent(group, version.version))) return false;
    await this.client.putManifest(repository, 'latest', pkg.manifest, pkg.mediaType);
    return true;
  }
}
