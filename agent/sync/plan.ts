import pLimit from 'p-limit';
import type { VersionedState } from '../../core/state/delta.js';
import type { StateArtifact } from '../../core/state/render.js';
import { imageRegistry, type AgentGroup } from '../config/config.js';
import { imageRecordKey, type GroupRecord, type ImageRecord } from '../store/state-files.js';
import type { SyncContext } from './context.js';

// Step 3 of a group's sync: which of the state's images must be pulled. An image whose every
// manifest and blob is still in the store is kept as it is (unless the group lost a blob to
// damage, when all are checked again by pulling); so is one that failed and waits for its next
// try (backoff.ts); every other one is pulled. Images never
// pulled yet are recorded 'pending' first, so `status` shows them while a long sync runs.

export interface PullPlan {
  /** Where the images are pulled from: the registry the state names, or its alias (registryAliases). */
  registry: string;
  /** The state's entries that are not deleted: what the group serves once pulled. */
  live: StateArtifact[];
  /** Images not pulled this pass, by record key: complete in the store, or failed and waiting for their next try (backoff.ts). */
  kept: Record<string, ImageRecord>;
  /** Entries to pull, in the state's order. */
  toPull: StateArtifact[];
}

export async function planPulls(ctx: SyncContext, g: AgentGroup, state: VersionedState, rec: GroupRecord): Promise<PullPlan> {
  const live = state.artifacts.filter((a) => !a.deleted);
  const damaged = ctx.damaged.delete(g.name);
  // One that failed before stays 'failed', with its reason, until its retry ends.
  const started = new Date().toISOString();
  let pending = 0;
  for (const a of live) {
    const key = imageRecordKey(a.repository, a.digest);
    if (rec.images[key] && rec.images[key].status !== 'pending') continue;
    rec.images[key] = { repository: a.repository, digest: a.digest, status: 'pending', at: started };
    pending++;
  }
  if (pending) {
    ctx.metrics.images.set({ group: g.name, status: 'pending' }, pending);
    await ctx.saveDoc();
  }
  const kept: Record<string, ImageRecord> = {};
  const limit = pLimit(ctx.config.concurrency);
  const complete = await Promise.all(live.map((a) => limit(async () => {
    const before = rec.images[imageRecordKey(a.repository, a.digest)];
    return !damaged && before !== undefined && (before.status === 'present' || before.status === 'skipped') && (await inStore(ctx, before));
  })));
  const toPull: StateArtifact[] = [];
  live.forEach((a, i) => {
    const key = imageRecordKey(a.repository, a.digest);
    if (complete[i] || (rec.images[key]?.status === 'failed' && ctx.backoff.waiting(g.name, key))) kept[key] = rec.images[key]!;
    else toPull.push(a);
  });
  return { registry: imageRegistry(ctx.config, state.registry), live, kept, toPull };
}

/** Whether every digest an image needs is still in the store. */
async function inStore(ctx: SyncContext, rec: ImageRecord): Promise<boolean> {
  for (const d of [...(rec.manifests ?? []), ...(rec.blobs ?? [])]) if (!(await ctx.store.has(d))) return false;
  return true;
}
