import { query, type Pool } from '../db/pool.js';
import * as sql from './state-store.sql.js';

export interface StateVersion {
  group: string;
  version: number;
  contentDigest: string;
  status: 'pending' | 'published' | 'abandoned';
  layout: string;
  repository: string;
  artifactCount: number;
  manifestDigest: string | null;
  createdAt: Date;
  publishedAt: Date | null;
}

type Row = {
  group_name: string; version: number; content_digest: string; status: StateVersion['status']; layout: string;
  repository: string; artifact_count: number; manifest_digest: string | null; created_at: Date; published_at: Date | null;
};

const fromRow = (r: Row): StateVersion => ({
  group: r.group_name, version: r.version, contentDigest: r.content_digest, status: r.status, layout: r.layout,
  repository: r.repository, artifactCount: r.artifact_count, manifestDigest: r.manifest_digest,
  createdAt: r.created_at, publishedAt: r.published_at,
});

/** The exact bytes of a version's package. */
export interface StoredPackage {
  digest: string;
  manifest: Buffer;
  blobs: Buffer[];
}

/** A point in a group's change history: its newest change id, and when it was read. */
export interface BuildPoint {
  at: Date;
  changeId: number;
  /** The snapshot's xmin (xid8 as text), when the build read the group in a snapshot. */
  xmin?: string;
  /** The whole snapshot the group was read in (pg_snapshot as text): which changes it saw. */
  snapshot?: string;
}

/** The newest published version of a group with its kept package, and the snapshot it was read at. */
export interface RestorablePackage {
  version: number;
  package: StoredPackage;
  xmin: string;
  readAt: Date;
  /** Entries the version lists. */
  count: number;
}

/** A package's blobs, a row each, as state-store.sql.ts's BLOB gives them (base64; Node skips the line breaks Postgres puts in). */
const blobsOf = (rows: readonly { blob: string | null }[]): Buffer[] => rows.flatMap((x) => (x.blob === null ? [] : [Buffer.from(x.blob, 'base64')]));

/** The newest published version of a group (a delta's base) and the manifest it was pushed as, when still kept. */
export interface DeltaBase {
  version: number;
  layout: string;
  manifest: Buffer | null;
}

export type Allocation = { kind: 'unchanged'; current: StateVersion } | {
  kind: 'publish';
  version: StateVersion;
  /** A version allocated by an earlier attempt for the same content: its package may be kept. */
  reused: boolean;
  /** The newest published version when allocated (none yet: undefined). */
  base: DeltaBase | undefined;
};

/** The versions a group's states were published under. All SQL about them goes through here (state-store.sql.ts). */
export class StateStore {
  constructor(private readonly pool: Pool) {}

  async latest(group: string): Promise<StateVersion | undefined> {
    const { rows } = await query<Row>(this.pool, sql.LATEST, [group]);
    return rows[0] && fromRow(rows[0]);
  }

  async latestPublished(group: string): Promise<StateVersion | undefined> {
    const { rows } = await query<Row>(this.pool, sql.LATEST_PUBLISHED, [group]);
    return rows[0] && fromRow(rows[0]);
  }

  /**
   * Decides what a build publishes, under a per-group lock: nothing when the content equals
   * the latest published state (same layout and place); the pending version when a retry
   * brings the same content; else a new version (a pending one for other content is
   * abandoned: its number is never reused, so version tags stay immutable).
   */
  async allocate(group: string, contentDigest: string, layout: string, repository: string, artifactCount: number,
    /** A new version even for published content (its package was lost and must be remade). */
    fresh = false): Promise<Allocation> {
    // One round trip: the decision is made under the group's lock by satellite_allocate
    // (migration 65), which returns the version it settled on, and the delta's base with it.
    const { rows } = await query<Row & { outcome: 'unchanged' | 'reused' | 'new'; base_version: number | null; base_layout: string | null; base_manifest: Buffer | null }>(
      this.pool, sql.ALLOCATE, [group, contentDigest, layout, repository, artifactCount, fresh]);
    const r = rows[0]!;
    const version = fromRow(r);
    if (r.outcome === 'unchanged') return { kind: 'unchanged', current: version };
    const base = r.base_version === null ? undefined : { version: r.base_version, layout: r.base_layout!, manifest: r.base_manifest };
    return { kind: 'publish', version, reused: r.outcome === 'reused', base };
  }

  /** Marks a version published; older versions' packages are no longer needed and are dropped. */
  /** markPublished and markBuilt in one statement: a build's last round trip. */
  async markPublishedAndBuilt(group: string, version: number, manifestDigest: string, point: BuildPoint): Promise<void> {
    await query(this.pool, sql.MARK_PUBLISHED_AND_BUILT,
      [group, version, manifestDigest, point.changeId, point.at, point.snapshot ?? null, point.xmin ?? null]);
  }

  /**
   * What a worker holding nothing of a group starts from, in one round trip: the version a
   * new allocation would get now (see nextVersion), and the newest published version, when
   * its package is still kept and the snapshot its content was read at is known and no older
   * than `maxAgeMs` (the change log since then is still there).
   */
  async restorable(group: string, layout: string, maxAgeMs: number): Promise<{ next: number; found: RestorablePackage | undefined }> {
    const { rows } = await query<{ next: number; version: number | null; read_xmin: string | null; read_at: Date | null; artifact_count: number | null;
      manifest_digest: string | null; manifest: Buffer | null; blob: string | null }>(this.pool, sql.RESTORABLE, [group, layout, maxAgeMs]);
    const r = rows[0]!;
    if (r.version === null) return { next: r.next, found: undefined };
    const pkg = { digest: r.manifest_digest!, manifest: r.manifest!, blobs: blobsOf(rows) };
    return { next: r.next, found: { version: r.version, package: pkg, xmin: r.read_xmin!, readAt: r.read_at!, count: r.artifact_count! } };
  }

  /**
   * The version a new allocation for the group would get now (satellite_allocate: one past
   * the newest). Only a guess for what a build will publish: a reused pending version, or a
   * build allocating meanwhile, makes it another.
   */
  async nextVersion(group: string): Promise<number> {
    const { rows } = await query<{ version: number }>(this.pool, sql.NEXT_VERSION, [group]);
    return rows[0]!.version;
  }

  async markPublished(group: string, version: number, manifestDigest: string): Promise<void> {
    await query(this.pool, sql.MARK_PUBLISHED,
      [group, version, manifestDigest]);
  }

  /**
   * What the pruner removes, of every group: published versions beyond the newest `keep`,
   * then abandoned versions that may have been pushed (tagged v<N>, never `latest`); grouped
   * by group, oldest first; none pruned from the registry yet.
   */
  async toPrune(keep: number): Promise<(StateVersion & { abandoned: boolean })[]> {
    const { rows } = await query<Row & { kind: number }>(this.pool, sql.TO_PRUNE, [keep]);
    return rows.map((r) => ({ ...fromRow(r), abandoned: r.kind === 1 }));
  }

  async markPruned(group: string, version: number): Promise<void> {
    await query(this.pool,
      'UPDATE state_versions SET pruned_at = now(), manifest = NULL, blobs = NULL WHERE group_name = $1 AND version = $2', [group, version]);
  }

  /**
   * Where a build starts reading: the newest change of the group and the time. Read before
   * the group is listed, so everything up to that change is in the listing (a change that
   * commits in between is listed too, and only makes a later pass find nothing new).
   */
  async buildPoint(group: string): Promise<BuildPoint> {
    const { rows } = await query<{ at: Date; change_id: string; snapshot: string }>(this.pool, sql.BUILD_POINT, [group]);
    return { at: rows[0]!.at, changeId: Number(rows[0]!.change_id), snapshot: rows[0]!.snapshot };
  }

  /**
   * Records that `latest` now holds every change up to `point`. Called only after a build
   * succeeded, so a build that fails for good leaves its group stale for the reconcile pass.
   */
  async markBuilt(group: string, point: BuildPoint): Promise<void> {
    await query(this.pool, sql.MARK_BUILT, [group, point.changeId, point.at, point.snapshot ?? null]);
  }

  /** Whether `version` is still the newest version allocated for the group (none superseded it). */
  async isCurrent(group: string, version: number): Promise<boolean> {
    const last = await this.latest(group);
    return last?.version === version;
  }

  /**
   * Keeps the exact bytes a version is pushed as, before any tag can name it: its manifest
   * (whose digest the pruner uses) and blobs, for retries, repairs and the next delta.
   */
  async savePackage(group: string, version: number, pkg: StoredPackage): Promise<void> {
    await query(this.pool, sql.savePackage(pkg.blobs.length),
      [group, version, pkg.digest, pkg.manifest, ...pkg.blobs]);
  }

  /** The manifest a version was pushed as, without its blobs. */
  async loadManifest(group: string, version: number): Promise<Buffer | undefined> {
    const { rows } = await query<{ manifest: Buffer }>(this.pool,
      'SELECT manifest FROM state_versions WHERE group_name = $1 AND version = $2 AND manifest IS NOT NULL', [group, version]);
    return rows[0]?.manifest;
  }

  async loadPackage(group: string, version: number): Promise<StoredPackage | undefined> {
    // A row per blob: one bytea[] would be parsed in JavaScript.
    const { rows } = await query<{ manifest_digest: string; manifest: Buffer; blob: string | null }>(this.pool, sql.LOAD_PACKAGE, [group, version]);
    const r = rows[0];
    return r && { digest: r.manifest_digest, manifest: r.manifest, blobs: blobsOf(rows) };
  }

  /**
   * Groups whose published state may be out of date: never built, holding a change that no
   * successful build has published, or holding a tombstone (or a superseded manifest) whose
   * retention ended since the last successful build.
   */
  async staleGroups(tombstoneRetentionHours: number): Promise<string[]> {
    const { rows } = await query<{ name: string }>(this.pool, sql.STALE_GROUPS, [tombstoneRetentionHours]);
    return rows.map((r) => r.name);
  }

  /**
   * Forgets change_log rows older than `hours` whose change is already published: the audit
   * trail stays bounded while every unpublished change stays visible to `staleGroups`.
   */
  async pruneChangeLog(hours: number): Promise<number> {
    const { rowCount } = await query(this.pool, sql.PRUNE_CHANGE_LOG, [hours]);
    return rowCount ?? 0;
  }
}
