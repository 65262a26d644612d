import { setTimeout as delay } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { imageRegistry } from '../config/config.js';
import type { SyncContext } from '../sync/context.js';

// Pull-through for the site's other agents (setting `server.pullThrough`, off by
// default: set on a site's gateway): a manifest or blob asked by digest that the store does not hold yet, but that a
// state this agent verified names (an image entry's manifest, an index's children, an image's
// config and layers), is fetched once from the registry, checked
// against its digest, and served. So devices that start together with their gateway still
// download each blob over the site's WAN link once.
//
// What a state names is found from the states (applied, or verified by the sync under way)
// and the manifests already in the store, read by digest: nothing else is ever fetched, so
// the server is not an open proxy. A peer's ask and this agent's own sync share one
// download (ContentStore.ingest and .once, by digest). A pull-through fetches from the
// registry, never from this agent's own upstreams: agents that name each other would
// otherwise ask each other round in a circle until a timeout.

/** How long an ask for a digest waits for a state being verified now, before it is answered 404. */
const VERIFYING_WAIT_MS = 2_000;

interface ManifestDoc {
  mediaType?: string;
  config?: { digest: string; size: number };
  layers?: { digest: string; size: number }[];
  manifests?: { digest: string; size: number }[];
}

/** A digest a verified state names in a repository: the registry it comes from, and its size when a manifest gives it. */
export interface Named {
  registry: string;
  kind: 'manifest' | 'blob';
  size?: number;
}

/** What pull-through needs of the agent (sync/agent.ts): named so, not imported, to keep the modules acyclic. */
export type PullThroughHost = Pick<SyncContext, 'config' | 'log' | 'metrics' | 'store' | 'states' | 'client'> & {
  /** The verification of a new state under way, if any. */
  readonly verifying: Promise<unknown> | undefined;
};

export class PullThrough {
  /** Parsed manifests by digest (a digest's content never changes). */
  private readonly docs = new Map<string, ManifestDoc>();

  constructor(private readonly agent: PullThroughHost) {}

  /** What a verified state says of repository@digest; undefined: nothing names it. */
  async named(repository: string, digest: string): Promise<Named | undefined> {
    const found = await this.find(repository, digest);
    if (found || !this.agent.verifying) return found;
    // A device that started with its gateway may ask before the gateway verified the same
    // state: the answer waits a little for that verification.
    await Promise.race([this.agent.verifying.catch(() => undefined), delay(VERIFYING_WAIT_MS)]);
    return this.find(repository, digest);
  }

  private async find(repository: string, digest: string): Promise<Named | undefined> {
    for (const state of this.agent.states.values()) {
      const registry = imageRegistry(this.agent.config, state.registry);
      for (const a of state.artifacts) {
        if (a.deleted || a.repository !== repository) continue;
        if (a.digest === digest) return { registry, kind: 'manifest' };
        const inside = await this.within(a.digest, digest, 2);
        if (inside) return { registry, ...inside };
      }
    }
    return undefined;
  }

  /** Whether the stored manifest `parent` (or an index child of it, `depth` levels down) names `digest`. */
  private async within(parent: string, digest: string, depth: number): Promise<Omit<Named, 'registry'> | undefined> {
    const doc = await this.doc(parent);
    if (!doc) return undefined;
    for (const m of doc.manifests ?? []) {
      if (m.digest === digest) return { kind: 'manifest', size: m.size };
      if (depth > 1) {
        const inside = await this.within(m.digest, digest, depth - 1);
        if (inside) return inside;
      }
    }
    for (const b of [...(doc.config ? [doc.config] : []), ...(doc.layers ?? [])]) {
      if (b.digest === digest) return { kind: 'blob', size: b.size };
    }
    return undefined;
  }

  private async doc(digest: string): Promise<ManifestDoc | undefined> {
    const known = this.docs.get(digest);
    if (known) return known;
    if (!(await this.agent.store.has(digest))) return undefined;
    try {
      const doc = JSON.parse((await this.agent.store.read(digest)).toString('utf8')) as ManifestDoc;
      this.docs.set(digest, doc);
      return doc;
    } catch {
      return undefined;
    }
  }

  /** A named manifest's bytes: from the store, else fetched once, checked against its digest, and kept. */
  async manifest(repository: string, digest: string, named: Named): Promise<Buffer> {
    if (await this.agent.store.has(digest)) return this.agent.store.read(digest);
    return this.agent.store.once(digest, async () => {
      const fetched = await this.agent.client(named.registry).getManifest(repository, digest);
      if (!fetched) throw new Error(`${repository}@${digest} is not in the registry`);
      if (fetched.digest !== digest) throw new Error(`${repository}@${digest} arrived as ${fetched.digest}`);
      await this.agent.store.write(digest, fetched.bytes);
      this.agent.metrics.bytesPulled.inc({ what: 'pull-through' }, fetched.bytes.length);
      return fetched.bytes;
    });
  }

  /**
   * A named blob not stored yet: its download (shared with any under way for the same
   * digest), followed as it arrives. The download goes on when the peer leaves: the blob is
   * one the site needs.
   */
  blob(repository: string, digest: string, size: number, named: Named): Readable {
    const registry = this.agent.client(named.registry);
    const download = this.agent.store.ingest(digest, size, (offset) => registry.openBlob(repository, digest, offset));
    download.then((r) => r.downloaded && this.agent.metrics.bytesPulled.inc({ what: 'pull-through' }, r.downloaded), (err: unknown) => {
      this.agent.log.warn({ repository, digest, err: (err as Error).message }, 'pull-through of a blob for a peer failed');
    });
    return this.agent.store.follow(digest, size, download);
  }
}
