import type { HarborArtifact, HarborSetup } from '@harbor-api/client';
import { cosignTagTarget } from '../core/oci/digest.js';
import type { Platform } from '../core/oci/manifest.js';
import type { Pool } from '../core/db/pool.js';
import type { Logger } from '../core/logger.js';
import { ArtifactStore } from '../core/store/artifact-store.js';
import { GroupStore, type HarborFilter } from '../core/store/group-store.js';
import { HarborStore, type ArtifactMetadata, type TombstoneRef } from '../core/store/harbor-store.js';
import { selectsArtifact, selectsRepository } from './filters.js';

// Reconciliation of a group's list with Harbor. Harbor's replication never sends the whole
// list (event-based runs carry one artifact, manual runs only what is missing, and no run
// deletes what left a filter), so the list is compared with what the group's rule selects
// in Harbor now, read through the API:
// - a live entry the rule no longer selects (filter changed, labels changed, deleted in
//   Harbor without a delete replicated) becomes a tombstone;
// - each entry gets Harbor's labels, and a single-platform image the platform Harbor read
//   from its config (the endpoint never sees config blobs).
// Everything Harbor says is read first and applied in one transaction afterwards: a
// reconcile that cannot reach Harbor, or gets any page wrong, changes nothing.
//
// Only a full reconcile (scheduled, or asked for) tombstones by comparison. One started by an
// event (a DELETE_ARTIFACT webhook) never shrinks a list beyond the artifact the event names,
// and only once Harbor confirms that artifact is gone.

export interface ReconcileSummary {
  group: string;
  /** Entries tombstoned, "repository@digest". */
  tombstoned: string[];
  /** Entries whose labels or platform changed. */
  updated: number;
  /** Live entries compared. */
  checked: number;
}

interface LiveEntry {
  repository: string;
  digest: string;
  subject: string | undefined;
  labels: string[] | null;
  platform: Platform | null;
  isIndex: boolean;
}

/** The platform of a single-platform image, from Harbor's extra_attrs (os, architecture, variant when present). */
function platformOf(a: HarborArtifact): Platform | null {
  const x = (a.extra_attrs ?? {}) as Record<string, unknown>;
  if ((a.references ?? []).length > 0 || typeof x.os !== 'string' || typeof x.architecture !== 'string' || !x.os || !x.architecture) return null;
  const p: Platform = { os: x.os, architecture: x.architecture };
  if (typeof x.variant === 'string' && x.variant) p.variant = x.variant;
  return p;
}

const labelsOf = (a: HarborArtifact): string[] | null => {
  const names = (a.labels ?? []).flatMap((l) => (l.name ? [l.name] : [])).sort();
  return names.length ? names : null;
};

// Compared field by field: a platform read back from jsonb has its keys in jsonb's order.
const samePlatform = (a: Platform | null, b: Platform | null) =>
  a === b || (a !== null && b !== null && a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? ''));
const sameMeta = (e: LiveEntry, labels: string[] | null, platform: Platform | null) =>
  JSON.stringify(e.labels ?? null) === JSON.stringify(labels) && samePlatform(e.platform, platform);

export class HarborReconciler {
  private readonly artifacts: ArtifactStore;
  private readonly groups: GroupStore;
  private readonly store: HarborStore;

  constructor(pool: Pool, private readonly harbor: HarborSetup, private readonly log: Logger, private readonly tombstoneRetentionHours: number) {
    this.artifacts = new ArtifactStore(pool);
    this.groups = new GroupStore(pool);
    this.store = new HarborStore(pool);
  }

  private async liveEntries(group: string): Promise<LiveEntry[]> {
    const rows = await this.artifacts.listGroup(group, this.tombstoneRetentionHours);
    return rows.filter((r) => !r.deleted).map((r) => ({
      repository: r.repository,
      digest: r.digest,
      subject: r.subject ?? r.tags.map((t) => cosignTagTarget(t)?.digest).find((d) => d !== undefined),
      labels: r.labels ?? null,
      platform: r.platform ?? null,
      isIndex: (r.children?.length ?? 0) > 0,
    }));
  }

  /** The filters of the group's rule as Harbor has them now (someone may have edited it in the UI). */
  private async filters(group: string): Promise<HarborFilter[]> {
    const managed = await this.groups.get(group);
    if (!managed || managed.policyId === null) throw new Error(`group ${group} is not managed here: create it or adopt its replication rule first`);
    const policy = await this.harbor.getPolicy(managed.policyId);
    if (!policy) throw new Error(`the replication rule of group ${group} (policy ${managed.policyId}) no longer exists in Harbor`);
    return (policy.filters ?? []).map((f) => ({ type: f.type ?? '', value: f.value, ...(f.decoration ? { decoration: f.decoration } : {}) }));
  }

  /** A full reconcile of one managed group. */
  async reconcileGroup(group: string): Promise<ReconcileSummary> {
    const filters = await this.filters(group);
    const entries = await this.liveEntries(group);
    // Harbor's view of every repository the list names: read completely before acting.
    const selected = new Set<string>();
    const byKey = new Map<string, HarborArtifact>();
    for (const repository of [...new Set(entries.map((e) => e.repository))]) {
      const slash = repository.indexOf('/');
      const list = await this.harbor.artifacts(repository.slice(0, slash), repository.slice(slash + 1)).catch((err: { status?: number }) => {
        if (err.status === 404) return []; // the repository (or its project) is gone from Harbor
        throw err;
      });
      const inRule = selectsRepository(filters, repository);
      for (const a of list) {
        if (!a.digest) continue;
        byKey.set(`${repository}@${a.digest}`, a);
        if (!inRule || !selectsArtifact(filters, a)) continue;
        selected.add(`${repository}@${a.digest}`);
        // An index's children arrive (and may be recorded alone) before the index.
        for (const r of a.references ?? []) if (r.child_digest) selected.add(`${repository}@${r.child_digest}`);
      }
    }
    const tombstones: TombstoneRef[] = [];
    const metadata: ArtifactMetadata[] = [];
    for (const e of entries) {
      const key = `${e.repository}@${e.digest}`;
      // A signature or other referrer stays as long as what it is about does (Harbor lists
      // cosign signatures as accessories of the artifact, not as artifacts of their own).
      const keep = selected.has(key) || (e.subject !== undefined && selected.has(`${e.repository}@${e.subject}`));
      if (!keep) {
        tombstones.push({ group, repository: e.repository, digest: e.digest });
        continue;
      }
      const a = byKey.get(key);
      if (!a) continue;
      const labels = labelsOf(a);
      const platform = e.isIndex ? null : platformOf(a);
      if (!sameMeta(e, labels, platform)) metadata.push({ repository: e.repository, digest: e.digest, labels, platform });
    }
    const changed = tombstones.length > 0 || metadata.length > 0;
    if (changed) await this.store.apply(metadata, tombstones, [group]);
    const summary = { group, tombstoned: tombstones.map((t) => `${t.repository}@${t.digest}`), updated: metadata.length, checked: entries.length };
    if (changed) this.log.info(summary, 'group reconciled with Harbor');
    return summary;
  }

  /**
   * After Harbor reported an artifact deleted: tombstones it (and what refers to it) in the
   * groups that list it, once Harbor confirms it is gone. Nothing else is touched.
   */
  async reconcileDeleted(repository: string, digest: string): Promise<{ groups: string[]; tombstoned: number }> {
    const groups = await this.groups.listing(repository, digest);
    if (groups.length === 0) return { groups, tombstoned: 0 };
    const slash = repository.indexOf('/');
    const still = await this.harbor.findArtifact(repository.slice(0, slash), repository.slice(slash + 1), digest);
    if (still) {
      this.log.info({ repository, digest }, 'artifact reported deleted is still in Harbor; nothing to do');
      return { groups: [], tombstoned: 0 };
    }
    const tombstones: TombstoneRef[] = [];
    for (const group of groups) {
      for (const e of await this.liveEntries(group)) {
        if (e.repository === repository && (e.digest === digest || e.subject === digest)) tombstones.push({ group, repository, digest: e.digest });
      }
    }
    const tombstoned = await this.store.apply([], tombstones, groups);
    this.log.info({ repository, digest, groups, tombstoned }, 'artifact deleted in Harbor tombstoned');
    return { groups, tombstoned };
  }
}
