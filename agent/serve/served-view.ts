import type { VersionedState } from '../../core/state/delta.js';
import { imageRecordKey, type FallbackEntry, type ImageRecord, type StateContent } from '../store/state-files.js';

// What the local registry serves, computed from the applied states and the status of each of
// their images: only images whose every byte is in the store. It is rebuilt as a whole and
// swapped in one assignment, before any blob it no longer names is collected, so a served
// manifest never points at a missing blob.
//
// A tag that moved to an image not present yet (its pull failed, or is under way) goes on
// naming what an earlier state served for it (the group's fallback entries) until its
// replacement is present: a failed pull never takes away what was being served.
//
// The applied state itself is served too (its manifest by digest and by the tag it was read
// by, its cosign signature tag, the blobs the agent read of them), for the site's other
// agents that name this one as an upstream (sync/upstreams.ts); the runtime never asks.

export class ServedView {
  /** repository → tag → manifest digest, as the states list them (the first group listing a tag wins). */
  private readonly tags = new Map<string, Map<string, string>>();
  /** repository → manifests that may be served from it. */
  private readonly manifests = new Map<string, Set<string>>();
  /** repository → blobs (configs, layers) that may be served from it. */
  private readonly blobs = new Map<string, Set<string>>();
  /** Every digest the view needs kept in the store. */
  readonly referenced = new Set<string>();

  static build(groups: readonly { state: VersionedState; images: Record<string, ImageRecord>; fallback?: readonly FallbackEntry[]; stateContent?: StateContent }[]): ServedView {
    const view = new ServedView();
    for (const { stateContent: c } of groups) {
      if (!c) continue;
      const set = (m: Map<string, Set<string>>) => m.get(c.repository) ?? m.set(c.repository, new Set()).get(c.repository)!;
      for (const d of c.manifests) set(view.manifests).add(d);
      for (const d of c.blobs) set(view.blobs).add(d);
      for (const d of [...c.manifests, ...c.blobs]) view.referenced.add(d);
      const tags = view.tags.get(c.repository) ?? view.tags.set(c.repository, new Map()).get(c.repository)!;
      for (const [t, d] of Object.entries(c.tags)) if (!tags.has(t)) tags.set(t, d);
    }
    for (const { state, images } of groups) {
      for (const a of state.artifacts) {
        if (a.deleted) continue;
        const rec = images[imageRecordKey(a.repository, a.digest)];
        if (!rec) continue;
        // Skipped images (another platform) keep their small manifest and config, so the
        // next sync does not fetch them again, but are not served.
        for (const d of [...(rec.manifests ?? []), ...(rec.blobs ?? [])]) if (rec.status !== 'failed') view.referenced.add(d);
        if (rec.status !== 'present') continue;
        const set = (m: Map<string, Set<string>>) => m.get(a.repository) ?? m.set(a.repository, new Set()).get(a.repository)!;
        for (const d of rec.manifests ?? []) set(view.manifests).add(d);
        for (const d of rec.blobs ?? []) set(view.blobs).add(d);
        const tags = view.tags.get(a.repository) ?? view.tags.set(a.repository, new Map()).get(a.repository)!;
        for (const t of a.tag) if (!tags.has(t)) tags.set(t, a.digest);
      }
    }
    for (const { state, images, fallback } of groups) {
      for (const f of fallback ?? []) {
        const kept = f.tags.filter((t) => awaitsReplacement(state, images, f.repository, t));
        if (kept.length === 0) continue;
        const set = (m: Map<string, Set<string>>) => m.get(f.repository) ?? m.set(f.repository, new Set()).get(f.repository)!;
        for (const d of f.manifests) {
          set(view.manifests).add(d);
          view.referenced.add(d);
        }
        for (const d of f.blobs) {
          set(view.blobs).add(d);
          view.referenced.add(d);
        }
        const tags = view.tags.get(f.repository) ?? view.tags.set(f.repository, new Map()).get(f.repository)!;
        for (const t of kept) if (!tags.has(t)) tags.set(t, f.digest);
      }
    }
    return view;
  }

  /** What a group serves under `state`: its present entries, and the fallback entries still awaiting a replacement. */
  static servedEntries(state: VersionedState, images: Record<string, ImageRecord>, fallback: readonly FallbackEntry[] = []): FallbackEntry[] {
    const out: FallbackEntry[] = [];
    for (const a of state.artifacts) {
      const rec = images[imageRecordKey(a.repository, a.digest)];
      if (a.deleted || rec?.status !== 'present' || a.tag.length === 0) continue;
      out.push({ repository: a.repository, digest: a.digest, tags: [...a.tag], manifests: [...(rec.manifests ?? [])], blobs: [...(rec.blobs ?? [])] });
    }
    return [...out, ...ServedView.stillAwaited(state, images, fallback)];
  }

  /** The fallback entries (reduced to their tags) whose replacement in `state` is not present yet. */
  static stillAwaited(state: VersionedState, images: Record<string, ImageRecord>, fallback: readonly FallbackEntry[]): FallbackEntry[] {
    return fallback
      .map((f) => ({ ...f, tags: f.tags.filter((t) => awaitsReplacement(state, images, f.repository, t)) }))
      .filter((f) => f.tags.length > 0);
  }

  /** The digest a tag or digest reference names in a repository, if served. */
  manifest(repository: string, reference: string): string | undefined {
    if (reference.includes(':')) return this.manifests.get(repository)?.has(reference) ? reference : undefined;
    return this.tags.get(repository)?.get(reference);
  }

  hasBlob(repository: string, digest: string): boolean {
    return this.blobs.get(repository)?.has(digest) === true || this.manifests.get(repository)?.has(digest) === true;
  }

  /** Tags of a repository in lexical order; undefined when nothing of it is served. */
  tagList(repository: string): string[] | undefined {
    if (!this.manifests.has(repository)) return undefined;
    return [...(this.tags.get(repository)?.keys() ?? [])].sort();
  }

  get repositories(): number {
    return this.manifests.size;
  }
}

/**
 * Whether `state` lists the tag on an entry that is not present yet (failed, pending, or
 * never tried): then what served the tag before goes on serving it. A tag the state no
 * longer lists, or whose entry is present or decided (skipped: another platform), is not
 * awaited.
 */
export function awaitsReplacement(state: VersionedState, images: Record<string, ImageRecord>, repository: string, tag: string): boolean {
  const entry = state.artifacts.find((a) => !a.deleted && a.repository === repository && a.tag.includes(tag));
  if (!entry) return false;
  const status = images[imageRecordKey(entry.repository, entry.digest)]?.status;
  return status === undefined || status === 'failed' || status === 'pending';
}
