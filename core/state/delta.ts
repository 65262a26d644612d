import { createHash } from 'node:crypto';
import { renderState, type GroupState, type StateArtifact } from './render.js';

// The difference between two versions of a group's state: what a satellite holding the
// older one downloads instead of the whole list. Entries are keyed by repository and digest
// (unique within a state); an entry whose rendering changed in any way (tags, deleted,
// platforms …) is sent whole.

export interface VersionedState extends GroupState {
  version: number;
}

export interface StateDelta {
  base: { version: number; digest: string };
  group: string;
  registry: string;
  version: number;
  removed: { repository: string; digest: string }[];
  upserted: StateArtifact[];
}

export const entryKey = (a: { repository: string; digest: string }): string => `${a.repository}@${a.digest}`;

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The sha256 digest of a state's exact bytes, as named in the manifest's annotations. */
export function jsonDigest(json: string | Buffer): string {
  return `sha256:${createHash('sha256').update(json).digest('hex')}`;
}

/** What turns `base` (whose rendered JSON has digest `baseDigest`) into `next`. */
export function diffStates(base: VersionedState, baseDigest: string, next: VersionedState): StateDelta {
  const before = new Map<string, string>();
  for (const a of base.artifacts) before.set(entryKey(a), JSON.stringify(a));
  const upserted: StateArtifact[] = [];
  for (const a of next.artifacts) {
    const key = entryKey(a);
    if (before.get(key) !== JSON.stringify(a)) upserted.push(a);
    before.delete(key);
  }
  const removed = [...before.keys()].sort(byCodeUnit).map((key) => {
    const at = key.lastIndexOf('@');
    return { repository: key.slice(0, at), digest: key.slice(at + 1) };
  });
  return {
    base: { version: base.version, digest: baseDigest },
    group: next.group,
    registry: next.registry,
    version: next.version,
    removed,
    upserted,
  };
}

export class DeltaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeltaError';
  }
}

/**
 * Rebuilds the state a delta describes from the state it was made against, and renders it
 * canonically (the same order and bytes the worker renders), so the caller can compare its
 * digest with the one the signed manifest names.
 */
export function applyDelta(base: VersionedState, delta: StateDelta): { state: VersionedState; json: string } {
  if (delta.base.version !== base.version) {
    throw new DeltaError(`the delta applies to version ${delta.base.version}, not ${base.version}`);
  }
  const entries = new Map<string, StateArtifact>();
  for (const a of base.artifacts) entries.set(entryKey(a), a);
  for (const r of delta.removed) entries.delete(entryKey(r));
  for (const a of delta.upserted) entries.set(entryKey(a), a);
  const artifacts = [...entries.values()].sort((x, y) => byCodeUnit(x.repository, y.repository) || byCodeUnit(x.digest, y.digest));
  const state: VersionedState = { group: delta.group, registry: delta.registry, version: delta.version, artifacts };
  return { state, json: renderState(state, delta.version) };
}

/** The canonical text of a delta (compact, fixed key order). */
export function renderDelta(delta: StateDelta): string {
  const { base, group, registry, version, removed, upserted } = delta;
  return JSON.stringify({ base, group, registry, version, removed, upserted });
}
