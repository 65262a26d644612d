import type { VersionedState } from '../core/state/delta.js';
import { imageKey, type ImageRecord } from './agent-state.js';

// What the local registry serves, computed from the applied states and the status of each of
// their images: only images whose every byte is in the store. It is rebuilt as a whole and
// swapped in one assignment, before any blob it no longer names is collected, so a served
// manifest never points at a missing blob.

export class ServedView {
  /** repository → tag → manifest digest, as the states list them (the first group listing a tag wins). */
  private readonly tags = new Map<string, Map<string, string>>();
  /** repository → manifests that may be served from it. */
  private readonly manifests = new Map<string, Set<string>>();
  /** repository → blobs (configs, layers) that may be served from it. */
  private readonly blobs = new Map<string, Set<string>>();
  /** Every digest the view needs kept in the store. */
  readonly referenced = new Set<string>();

  static build(groups: readonly { state: VersionedState; images: Record<string, ImageRecord> }[]): ServedView {
    const view = new ServedView();
    for (const { state, images } of groups) {
      for (const a of state.artifacts) {
        if (a.deleted) continue;
        const rec = images[imageKey(a.repository, a.digest)];
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
    return view;
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
