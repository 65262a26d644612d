import type { Logger } from '../core/logger.js';
import { RegistryRequestError, type RegistryClient } from '../core/registry/registry-client.js';
import { computeDigest } from '../core/oci/digest.js';
import { diffStates, jsonDigest, renderDelta, type VersionedState } from '../core/state/delta.js';
import { formatBytes } from '../core/http/bounded-body.js';
import { DEFAULT_STATE_MAX_MB, layerText, stateLayers } from '../core/state/format.js';
import type { ArtifactStore, SupersededPolicy } from '../core/store/artifact-store.js';
import type { BuildPoint, DeltaBase, RestorablePackage, StateStore, StateVersion, StoredPackage } from '../core/store/state-store.js';
import type { Pusher } from './pusher.js';
import type { Signer } from './signer.js';
import { stateRepository, versionTag, type PackagedDelta, type PackagedState } from '../core/state/artifact.js';
import type { StateLayout } from '../core/state/layouts/index.js';
import { StateCache, StateContent, UnusableContentError } from './state-content.js';

export interface BuildResult {
  group: string;
  result: 'published' | 'unchanged' | 'repaired' | 'superseded';
  version: number;
  digest: string;
  artifacts: number;
  /**
   * What the build read of the group (logged with its result): only what changed since the
   * content this worker kept ("changes"), or since the snapshot of the published version
   * whose package it took up ("changes since published"), or everything ("whole group").
   */
  read: 'changes' | 'changes since published' | 'whole group';
  /**
   * Where the build's time went, in ms from its start (logged with its result): the group
   * read, the version packaged, the signature attached, the version tag put (its blobs
   * uploaded meanwhile, beside the signature), `latest` moved. Stages not reached are absent.
   */
  ms?: Partial<Record<Stage, number>>;
}

export type Stage = 'read' | 'packaged' | 'signed' | 'tagged' | 'latest';

/** Marks when each stage of a build ended, in ms since the build began. */
class Stopwatch {
  private readonly start = performance.now();
  readonly marks: Partial<Record<Stage, number>> = {};
  mark(stage: Stage): void {
    this.marks[stage] = Math.round((performance.now() - this.start) * 10) / 10;
  }
}

export interface StateBuilderOptions {
  imageRegistry: string;
  stateProject: string;
  layout: StateLayout;
  tombstoneRetentionHours: number;
  /** SUPERSEDED_MANIFESTS. @defaultValue "tombstone" */
  supersededManifests?: SupersededPolicy;
  /** Group contents kept between builds (STATE_CACHE_MB); none when absent. */
  cache?: StateCache;
  /** The most a state's JSON may weigh (STATE_MAX_MB). @defaultValue DEFAULT_STATE_MAX_MB MiB */
  maxStateBytes?: number;
}

/** A state larger than satellites accept (STATE_MAX_MB): publishing it would only have them refuse it. */
export class StateTooLargeError extends Error {
  constructor(group: string, size: number, limit: number) {
    super(`the state of group ${group} is ${formatBytes(size)} of JSON, more than STATE_MAX_MB (${formatBytes(limit)}) that satellites accept; `
      + 'raise STATE_MAX_MB and the agents\' maxStateMb together, or split the group');
    this.name = 'StateTooLargeError';
  }
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

  private get maxStateBytes(): number {
    return this.options.maxStateBytes ?? DEFAULT_STATE_MAX_MB * 1024 * 1024;
  }

  async build(group: string): Promise<BuildResult> {
    const watch = new Stopwatch();
    const registry = this.options.imageRegistry;
    // Asked for meanwhile: the version this build will most likely publish, whose full
    // layer's digest is then computed in the same pass over the text as the content digest.
    // Content kept from a version this worker published: most likely the next one, and no
    // round trip to ask (a guess that missed costs a second pass over the text, no more).
    const cached = this.options.cache?.take(group, registry, Date.now());
    const deltas = this.options.layout.deltas;
    // Holding nothing of the group: the next version comes with what can be restored.
    const start = !cached && this.options.cache && deltas ? this.states.restorable(group, this.options.layout.name, this.options.cache.maxAgeMs) : undefined;
    const expected = !deltas ? undefined
      : cached?.published ? Promise.resolve(cached.published.version + 1)
        : start ? start.then((s) => s.next) : this.states.nextVersion(group);
    expected?.catch(() => {}); // awaited below, unless restoring fails first
    const restored = start ? await this.restore(group, registry, (await start).found) : undefined;
    const kept = cached ?? restored?.content;
    // One snapshot: the point the build starts from and what the group holds then (only
    // what changed since, when the content of an earlier build is kept or restored).
    let content = kept ?? new StateContent(group, registry, this.options.layout);
    const version = await expected;
    content.expectVersion(version);
    const full = kept ? undefined : content.beginFull();
    const readGroup = (since?: string, onRows?: Parameters<ArtifactStore['snapshot']>[4], also?: { repository: string; digest: string }[], holds?: number) =>
      this.artifacts.snapshot(group, this.options.tombstoneRetentionHours, this.options.supersededManifests ?? 'tombstone', since, onRows, also, holds);
    let snapshot = await readGroup(kept?.xmin, full?.add, restored?.reread, kept?.count);
    let read: BuildResult['read'] = cached ? 'changes' : restored ? 'changes since published' : 'whole group';
    if (full) {
      full.finish(snapshot);
    } else {
      try {
        content.apply(snapshot);
      } catch (err) {
        if (!(err instanceof UnusableContentError)) throw err;
        // Content taken up from a layer this worker would not have written so: the group is
        // read whole, as though nothing were kept.
        this.log.warn({ group, err: err.message }, 'the kept content of the group cannot be built on; reading the group in full');
        content = new StateContent(group, registry, this.options.layout);
        content.expectVersion(version);
        const whole = content.beginFull();
        snapshot = await readGroup(undefined, whole.add);
        whole.finish(snapshot);
        read = 'whole group';
      }
    }
    watch.mark('read');
    let usable = true;
    try {
      return { ...await this.buildContent(group, content, { at: snapshot.at, changeId: snapshot.changeId, xmin: snapshot.xmin, snapshot: snapshot.snapshot }, watch), read, ms: watch.marks };
    } catch (err) {
      if (err instanceof UnusableContentError) usable = false;
      throw err;
    } finally {
      // Whatever happened to the publish, the content is the group's as of the snapshot.
      if (usable) this.options.cache?.put(content);
    }
  }

  /**
   * The content of the group's newest published version, out of its kept package, when this
   * worker holds none (it started since, or another replica built the group last) and that
   * version was read recently enough for the change log since to be complete; undefined
   * when there is none, or its package is not laid out as this worker would write it.
   */
  private async restore(group: string, registry: string, found: RestorablePackage | undefined): Promise<{ content: StateContent; reread: { repository: string; digest: string }[] } | undefined> {
    if (!found) return undefined;
    const layers = stateLayers(JSON.parse(found.package.manifest.toString('utf8')) as object);
    const layer = layers?.stateDigest && found.package.blobs.find((b) => computeDigest(b) === layers.full.digest);
    if (!layers?.stateDigest || !layer) return undefined;
    const content = new StateContent(group, registry, this.options.layout);
    const reread = content.restore(found.version, layer, layers.stateDigest, found.xmin, found.readAt, found.count);
    if (!reread) {
      this.log.warn({ group, version: found.version }, 'the kept package of the published state cannot be taken up; reading the group in full');
      return undefined;
    }
    return { content, reread };
  }

  private async buildContent(group: string, content: StateContent, point: BuildPoint, watch: Stopwatch): Promise<Omit<BuildResult, 'read'>> {
    const repository = stateRepository(this.options.stateProject, group);
    const allocate = (fresh: boolean) =>
      this.states.allocate(group, content.contentDigest(), this.options.layout.name, repository, content.count, fresh);
    let allocation = await allocate(false);

    if (allocation.kind === 'unchanged') {
      const current = allocation.current;
      const summary = { group, version: current.version, digest: current.manifestDigest!, artifacts: content.count };
      // Nothing new to publish; only make sure `latest` still names it (a registry
      // garbage-collected or restored from backup is put right on the next pass), with the
      // very bytes that version was published as.
      const latest = await this.client.headManifest(repository, 'latest');
      if (latest?.digest === current.manifestDigest) {
        await this.notePublished(group, content, current.version);
        await this.states.markBuilt(group, point);
        return { ...summary, result: 'unchanged' };
      }
      this.log.warn({ group, found: latest?.digest ?? null, expected: current.manifestDigest }, 'latest does not name the published state; publishing it again');
      const stored = await this.states.loadPackage(group, current.version);
      if (stored && (await this.publish(group, repository, fromStored(stored), current)) !== undefined) {
        await this.notePublished(group, content, current.version);
        await this.states.markBuilt(group, point);
        return { ...summary, result: 'repaired' };
      }
      // Published before packages were kept: its bytes cannot be remade, so a new version
      // carries the same content.
      allocation = await allocate(true);
      if (allocation.kind === 'unchanged') throw new Error('a fresh allocation cannot be unchanged');
    }

    const version = allocation.version;
    const { pkg, saved } = await this.packageFor(group, version, content, allocation.reused, allocation.base);
    watch.mark('packaged');
    const summary = { group, version: version.version, digest: pkg.digest, artifacts: content.count };
    const pushed = await this.publish(group, repository, pkg, version, saved, watch);
    if (pushed === undefined) {
      // A newer build allocated a newer version meanwhile: it publishes, this one stops
      // short of `latest` (its version tag is removed by the pruner).
      this.log.warn({ group, version: version.version }, 'a newer version superseded this build; latest left to it');
      return { ...summary, result: 'superseded' };
    }
    await this.states.markPublishedAndBuilt(group, version.version, pushed.digest, point);
    const digest = fullLayerDigest(pkg.manifest);
    if (digest) content.markPublished(version.version, digest);
    return { ...summary, digest: pushed.digest, result: 'published' };
  }

  /** The content equals that of `version` (published): deltas to come can start from it. */
  private async notePublished(group: string, content: StateContent, version: number): Promise<void> {
    if (content.published?.version === version || !this.options.layout.deltas) return;
    const manifest = await this.states.loadManifest(group, version);
    const digest = manifest && fullLayerDigest(manifest);
    if (digest) content.markPublished(version, digest);
  }

  /**
   * The package of a version: the one kept from an earlier attempt (a retry pushes the same
   * bytes), else a new one, with the delta from the newest published version when its
   * package is known, kept before anything is pushed.
   */
  private async packageFor(group: string, version: StateVersion, content: StateContent, reused: boolean, base: DeltaBase | undefined): Promise<{ pkg: PackagedState; saved: Promise<void> }> {
    // Only a version allocated by an earlier attempt can have a package kept.
    const stored = reused ? await this.states.loadPackage(group, version.version) : undefined;
    if (stored) return { pkg: fromStored(stored), saved: Promise.resolve() };
    const layout = this.options.layout;
    const json = layout.deltas ? await content.fullLayer(version.version) : content.document(version.version);
    const size = Buffer.isBuffer(json) ? json.length : json.size;
    if (size > this.maxStateBytes) throw new StateTooLargeError(group, size, this.maxStateBytes);
    const pkg = layout.deltas
      ? layout.package(json, version.createdAt, await this.deltaFrom(group, content, version.version, base))
      : layout.package(json, version.createdAt);
    // Kept while its blobs upload (publish waits for it before anything is signed or tagged).
    const saved = this.states.savePackage(group, version.version, { digest: pkg.digest, manifest: pkg.manifest, blobs: pkg.blobs.map((b) => b.bytes) });
    return { pkg: { ...pkg, fresh: true }, saved };
  }

  /**
   * The delta from the newest published version: from the changes this worker saw since it
   * published that version itself, else from that version's kept package (its text, or,
   * for a text laid out otherwise, its parsed state).
   */
  private async deltaFrom(group: string, content: StateContent, version: number, base: DeltaBase | undefined): Promise<PackagedDelta | undefined> {
    // The base came with the allocation (StateStore.allocate): no round trip of its own.
    if (!base || base.layout !== this.options.layout.name) return undefined;
    const baseDigest = base.manifest ? fullLayerDigest(base.manifest) : undefined;
    const known = baseDigest ? content.deltaFrom({ version: base.version, digest: baseDigest }, version) : undefined;
    if (known !== undefined) return { json: Buffer.from(known), baseDigest: baseDigest!, baseVersion: base.version };
    const stored = await this.states.loadPackage(group, base.version);
    if (!stored) return undefined;
    const layers = stateLayers(JSON.parse(stored.manifest.toString('utf8')) as object);
    const bytes = layers && stored.blobs.find((b) => computeDigest(b) === layers.full.digest);
    if (!layers || !bytes) return undefined;
    const text = layerText(bytes, layers.full.mediaType, { limit: this.maxStateBytes, url: `the kept package of ${group} version ${base.version}` });
    const digest = jsonDigest(text);
    const fromText = content.deltaFromText(text, { version: base.version, digest }, version);
    if (fromText !== undefined) return { json: Buffer.from(fromText), baseDigest: digest, baseVersion: base.version };
    const baseState = JSON.parse(text) as VersionedState;
    const next = JSON.parse(content.document(version).toString('utf8')) as VersionedState;
    const delta = diffStates(baseState, digest, next);
    return { json: Buffer.from(renderDelta(delta)), baseDigest: delta.base.digest, baseVersion: base.version };
  }

  /**
   * Pushes, signs, tags the version, and moves `latest` last; returns the package as it is
   * in the registry, or undefined when a newer version superseded this one before `latest`
   * moved. On every path the signature is in place before a version tag names the
   * manifest, and the signer is idempotent, so a retry adds no second signature.
   */
  private async publish(group: string, repository: string, pkg: PackagedState, version: StateVersion,
    /** The package being kept: needed before a tag can name it, not before its blobs upload by digest. */
    saved: Promise<void> = Promise.resolve(), watch?: Stopwatch): Promise<PackagedState | undefined> {
    let pushed = pkg;
    if (this.pusher.tagsWhilePushing) {
      await saved;
      pushed = await this.pushThroughTag(group, repository, pkg, version);
      await this.signer.sign(repository, pushed.digest, { fresh: false });
      await this.client.putManifest(repository, versionTag(version.version), pushed.manifest, pushed.mediaType);
    } else if (this.signer.needsSubject) {
      // The signer reads what it signs from the registry (cosign does): the package goes in
      // by digest, untagged, and the version tag follows the signature.
      await Promise.all([saved, this.pusher.push(repository, pkg, pkg.digest, { newRepository: version.version === 1 })]);
      await this.signer.sign(repository, pkg.digest, { fresh: pkg.fresh });
      await this.client.putManifest(repository, versionTag(version.version), pkg.manifest, pkg.mediaType);
    } else {
      // The digest is known before anything is pushed: the signature and the package's
      // blobs upload at once (while the package is being kept), then the package goes
      // straight to its version tag once the signature is in place. That is one manifest
      // PUT fewer than by digest and then by tag, about half the round trips one after the
      // other, and still no tag ever names an unsigned state.
      const signed = Promise.all([saved, this.signer.sign(repository, pkg.digest, { fresh: pkg.fresh }).finally(() => watch?.mark('signed'))]);
      await Promise.all([signed, this.pusher.push(repository, pkg, versionTag(version.version), { tagAfter: signed, newRepository: version.version === 1 })]);
    }
    for (const tag of this.options.layout.extraTags(version.createdAt)) {
      await this.client.putManifest(repository, tag, pushed.manifest, pushed.mediaType);
    }
    watch?.mark('tagged');
    if (!(await this.states.isCurrent(group, version.version))) return undefined;
    await this.client.putManifest(repository, 'latest', pushed.manifest, pushed.mediaType);
    watch?.mark('latest');
    return pushed;
  }

  /**
   * A pusher that can only push to a tag (the oras CLI) pushes to a staging tag of the
   * version (`pending-<N>`, never the version tag), and the manifest it left there is what
   * gets signed and tagged. When its digest differs from the rendered one (another oras
   * lays the manifest out otherwise), that package is kept in place of the rendered one, so
   * a retry or a repair uses the very same bytes: the job neither fails for good nor
   * publishes a new digest each time. A package already in the registry is not pushed again.
   */
  private async pushThroughTag(group: string, repository: string, pkg: PackagedState, version: StateVersion): Promise<PackagedState> {
    if (await this.client.headManifest(repository, pkg.digest)) return pkg;
    const staging = `pending-${version.version}`;
    await this.pusher.push(repository, pkg, staging);
    const found = await this.client.getManifest(repository, staging);
    if (!found) throw new RegistryRequestError(`${this.pusher.name} left nothing at ${staging}`, 0, undefined, true);
    if (found.digest === pkg.digest) return pkg;
    this.log.warn({ group, version: version.version, rendered: pkg.digest, pushed: found.digest }, 'the pusher produced another manifest than rendered; publishing the one it pushed');
    const adopted: PackagedState = { ...pkg, manifest: found.bytes, digest: found.digest, mediaType: found.mediaType || pkg.mediaType };
    await this.states.savePackage(group, version.version, { digest: adopted.digest, manifest: adopted.manifest, blobs: pkg.blobs.map((b) => b.bytes) });
    return adopted;
  }
}

/** The uncompressed digest a state manifest names for its full layer. */
function fullLayerDigest(manifest: Buffer): string | undefined {
  return stateLayers(JSON.parse(manifest.toString('utf8')) as object)?.stateDigest;
}

/** A kept package as the pushers take it. */
function fromStored(stored: StoredPackage): PackagedState {
  const mediaType = (JSON.parse(stored.manifest.toString('utf8')) as { mediaType?: string }).mediaType ?? 'application/vnd.oci.image.manifest.v1+json';
  return { manifest: stored.manifest, mediaType, digest: stored.digest, blobs: stored.blobs.map((bytes) => ({ digest: computeDigest(bytes), bytes })) };
}
