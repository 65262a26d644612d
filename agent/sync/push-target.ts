import type { RegistryClient } from '../../core/registry/registry-client.js';
import type { StateArtifact } from '../../core/state/render.js';
import type { AgentGroup } from '../config/config.js';
import type { ContentStore } from '../store/content-store.js';
import { imageRecordKey, type ImageRecord } from '../store/state-files.js';
import type { SyncContext } from './context.js';
import { describeFailure } from './pull.js';

// The alternative target: an existing registry at the site (a plain distribution registry,
// say) that the agent fills from its store instead of, or as well as, serving the images
// itself. A distribution registry refuses an index whose children it does not hold, so in
// this mode the agent pulls every child of an index, not only the device's platforms.

/**
 * Fills the registry target: what is present and not yet there (or whose tags changed) is
 * pushed; what was pushed and is no longer listed is deleted there. A push that fails is
 * an image failure, retried on the next pass.
 */
export async function fillTarget(ctx: SyncContext, g: AgentGroup, live: readonly StateArtifact[], before: Record<string, ImageRecord>, images: Record<string, ImageRecord>): Promise<void> {
  const target = ctx.client(ctx.config.pushTo!.registry, ctx.config.pushTo!.credentials, 'pull,push');
  for (const a of live) {
    const rec = images[imageRecordKey(a.repository, a.digest)];
    if (rec?.status !== 'present' || (rec.pushedTags && rec.pushedTags.join(',') === a.tag.join(','))) continue;
    try {
      await pushImage(target, ctx.store, a, rec);
      rec.pushedTags = [...a.tag];
    } catch (err) {
      ctx.metrics.failures.inc({ where: 'push' });
      ctx.log.warn({ group: g.name, repository: a.repository, digest: a.digest, err: (err as Error).message }, 'cannot push the image to the target registry');
      images[imageRecordKey(a.repository, a.digest)] = { ...rec, status: 'failed', reason: `push to ${ctx.config.pushTo!.registry}: ${describeFailure(err)}` };
    }
  }
  for (const [key, old] of Object.entries(before)) {
    if (images[key] || old.pushedTags === undefined) continue;
    await removeImage(target, old.repository, old.digest).catch((err: Error) =>
      ctx.log.warn({ group: g.name, repository: old.repository, digest: old.digest, err: err.message }, 'cannot remove the image from the target registry'));
  }
}

/** Pushes what an image holds in the store: blobs, then child manifests, then the manifest by digest and by each tag. */
export async function pushImage(client: RegistryClient, store: ContentStore, entry: StateArtifact, rec: ImageRecord): Promise<void> {
  const repository = entry.repository;
  for (const digest of rec.blobs ?? []) {
    const size = await store.size(digest);
    if (size === undefined) throw new Error(`${digest} is not in the store`);
    // A whole-blob read is checked against its digest as it streams.
    await client.pushBlobFrom(repository, digest, size, () => store.stream(digest, undefined, () => undefined));
  }
  const manifests = rec.manifests ?? [entry.digest];
  // Children before the manifest that names them (the order Harbor itself pushes in).
  for (const digest of [...manifests.filter((d) => d !== entry.digest), entry.digest]) {
    const bytes = await store.read(digest);
    await client.putManifest(repository, digest, bytes, mediaTypeOf(bytes));
  }
  const top = await store.read(entry.digest);
  for (const tag of entry.tag) await client.putManifest(repository, tag, top, mediaTypeOf(top));
}

/** Removes a manifest the states no longer list from the target (its tags go with it). */
export async function removeImage(client: RegistryClient, repository: string, digest: string): Promise<void> {
  await client.deleteManifest(repository, digest);
}

function mediaTypeOf(bytes: Buffer): string {
  const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; manifests?: unknown };
  return doc.mediaType ?? (Array.isArray(doc.manifests) ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json');
}
