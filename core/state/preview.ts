import type { Pool } from '../db/pool.js';
import { ArtifactStore, type SupersededPolicy } from '../store/artifact-store.js';
import { StateStore } from '../store/state-store.js';
import { ociLayout } from './layouts/oci.js';
import type { StateLayout } from './layouts/index.js';
import { buildState, renderArtifacts, renderedContentDigest, stateDocument } from './render.js';

/**
 * The state JSON a build would publish now, version included: the latest version when the
 * content is the one already published (or pending), the next one otherwise.
 */
export async function previewState(pool: Pool, group: string, imageRegistry: string, tombstoneRetentionHours: number,
  layout: StateLayout = ociLayout, superseded: SupersededPolicy = 'tombstone'): Promise<string> {
  const rows = await new ArtifactStore(pool).listGroup(group, tombstoneRetentionHours, superseded);
  const state = buildState(group, imageRegistry, rows);
  const leavesOut = layout.leavesOut;
  const rendered = renderArtifacts(leavesOut ? { ...state, artifacts: state.artifacts.filter((a) => !leavesOut(a)) } : state);
  const latest = await new StateStore(pool).latest(group);
  const version = latest === undefined ? 1 : latest.contentDigest === renderedContentDigest(rendered) ? latest.version : latest.version + 1;
  return stateDocument(rendered, version).toString();
}
