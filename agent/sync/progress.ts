import type { Descriptor } from '../../core/oci/manifest.js';
import type { ContentStore } from '../store/content-store.js';

// Pull progress for the running agent's log and `satellite agent status`: per image being
// pulled, the bytes its blobs hold so far against the sizes its manifests name. The bytes
// done are read from the store (a blob stored, or the partial file of its download), not
// counted in the download loop: a resumed download shows what is already on disk, and the
// hot path stays as it is.

export interface ImageProgress {
  group: string;
  repository: string;
  digest: string;
  bytesDone: number;
  /** The blobs known so far (an index's children are added as they are read). */
  bytesTotal: number;
}

interface Pulling {
  group: string;
  repository: string;
  digest: string;
  /** Blob digest → size, as the manifests name them. */
  blobs: Map<string, number>;
}

export class PullProgress {
  private readonly pulling = new Map<string, Pulling>();

  /** An image's pull starts; returns what its manifests' blobs are told to. */
  start(group: string, repository: string, digest: string): { blob(d: Descriptor): void; done(): void } {
    const key = `${group} ${repository}@${digest}`;
    const entry: Pulling = { group, repository, digest, blobs: new Map() };
    this.pulling.set(key, entry);
    return {
      blob: (d) => void entry.blobs.set(d.digest, d.size),
      done: () => void this.pulling.delete(key),
    };
  }

  get active(): boolean {
    return this.pulling.size > 0;
  }

  async snapshot(store: ContentStore): Promise<ImageProgress[]> {
    const out: ImageProgress[] = [];
    for (const p of this.pulling.values()) {
      let bytesDone = 0;
      let bytesTotal = 0;
      for (const [digest, size] of p.blobs) {
        bytesTotal += size;
        bytesDone += Math.min(size, (await store.size(digest)) ?? (await store.partialSize(digest)));
      }
      out.push({ group: p.group, repository: p.repository, digest: p.digest, bytesDone, bytesTotal });
    }
    return out;
  }
}
