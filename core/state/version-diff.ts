import type { RegistryClient } from '../registry/registry-client.js';
import { entryKey, type VersionedState } from './delta.js';
import { layerText, stateLayers } from './format.js';
import type { StateArtifact } from './render.js';

// What changed for satellites between two published versions of a group's state: images
// added, removed, and retagged (same repository and digest, other tags). `satellite state
// diff` and the admin API (and so the dashboard) both answer with this one function.

export interface DiffEntry {
  repository: string;
  digest: string;
  tag: string[];
}

export interface VersionDiff {
  group: string;
  from: number;
  to: number;
  added: DiffEntry[];
  removed: DiffEntry[];
  retagged: { repository: string; digest: string; from: string[]; to: string[] }[];
}

/** The differences from `from` to `to`, deleted entries (tombstones) left out on both sides. */
export function diffVersions(group: string, from: VersionedState, to: VersionedState): VersionDiff {
  const live = (s: VersionedState) => new Map(s.artifacts.filter((x) => !x.deleted).map((x) => [entryKey(x), x]));
  const before = live(from);
  const after = live(to);
  const pick = (x: StateArtifact): DiffEntry => ({ repository: x.repository, digest: x.digest, tag: x.tag });
  const added = [...after.values()].filter((x) => !before.has(entryKey(x))).map(pick);
  const removed = [...before.values()].filter((x) => !after.has(entryKey(x))).map(pick);
  const retagged = [...after.values()].flatMap((x) => {
    const old = before.get(entryKey(x));
    return old && old.tag.join(',') !== x.tag.join(',') ? [{ repository: x.repository, digest: x.digest, from: old.tag, to: x.tag }] : [];
  });
  return { group, from: from.version, to: to.version, added, removed, retagged };
}

export class StateNotPublishedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateNotPublishedError';
  }
}

/** The state JSON of a published version of a group ("3", "v3", "latest" or a digest), read from the state registry. */
export async function publishedState(client: RegistryClient, repository: string, ref: string, maxStateMb: number): Promise<VersionedState> {
  const reference = /^\d+$/.test(ref) ? `v${ref}` : ref;
  const m = await client.getManifest(repository, reference);
  if (!m) throw new StateNotPublishedError(`${repository}:${reference} is not published`);
  const layers = stateLayers(JSON.parse(m.bytes.toString('utf8')) as object);
  if (!layers) throw new StateNotPublishedError(`${repository}:${reference} is not a state`);
  const limit = maxStateMb * 1024 * 1024;
  const raw = await client.getBlob(repository, layers.full.digest, limit, 'a state layer');
  return JSON.parse(layerText(raw, layers.full.mediaType, { limit, url: `${client.baseUrl}/v2/${repository}/blobs/${layers.full.digest}` })) as VersionedState;
}
