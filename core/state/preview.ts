import type { Pool } from '../db/pool.js';
import { ArtifactStore, type SupersededPolicy } from '../store/artifact-store.js';
import { StateStore } from '../store/state-store.js';
import { stateForLayout } from './layout.js';
import { buildState, renderArtifacts, renderedContentDigest, stateDocument } from './render.js';

/**
 * The state JSON a build would publish now, version included: the latest version when the
 * content is the one already published (or pending), the next one otherwise.
 */
export async function previewState(pool: Pool, group: string, imageRegistry: string, tombstoneRetentionHours: number,
  layout: 'oci' | 'harbor-satellite' = 'oci', superseded: SupersededPolicy = 'tombstone'): Promise<string> {
  const rows = await new ArtifactStore(pool).listGroup(group, tombstoneRetentionHours, superseded);
  const rendered = renderArtifacts(stateForLayout(buildState(group, imageRegistry, rows), layout));
  const latest = await new StateStore(pool).latest(group);
  const version = latest === undefined ? 1 : latest.contentDigest === renderedContentDigest(rendered) ? latest.version : latest.version + 1;
  return stateDocument(rendered, version).toString();
}
