import type { VersionedState } from '../../core/state/delta.js';
import type { AgentGroup } from '../config/config.js';
import { ServedView } from '../serve/served-view.js';
import type { GroupRecord, ImageRecord } from '../store/state-files.js';
import type { SyncContext } from './context.js';
import type { PullPlan } from './plan.js';
import { fillTarget } from './push-target.js';

// Step 5 of a group's sync: the registry target (when there is one) gets what was pulled,
// the group's image records are replaced, what an earlier state served stays served for the
// tags whose replacement is still missing, and the server's view is swapped at once.

export async function applyImages(ctx: SyncContext, g: AgentGroup, state: VersionedState, rec: GroupRecord, plan: PullPlan, images: Record<string, ImageRecord>): Promise<void> {
  if (ctx.config.pushTo) await fillTarget(ctx, g, plan.live, rec.images, images);
  rec.images = images;
  const awaited = ServedView.stillAwaited(state, images, rec.fallback ?? []);
  if (awaited.length) rec.fallback = awaited;
  else delete rec.fallback;
  const failed = Object.values(images).filter((i) => i.status === 'failed');
  if (failed.length) rec.error = `${failed.length} of ${plan.live.length} images failed`;
  else delete rec.error;
  for (const status of ['present', 'failed', 'skipped', 'pending'] as const) {
    ctx.metrics.images.set({ group: g.name, status }, Object.values(images).filter((i) => i.status === status).length);
  }
  ctx.metrics.appliedVersion.set({ group: g.name }, state.version);
  ctx.rebuildView();
  await ctx.saveDoc();
}
