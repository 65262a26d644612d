import { query, type Pool } from '../db/pool.js';

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

/** Every column but the package's bytes, which only loadPackage reads. */
const COLUMNS = `group_name, version, content_digest, status, layout, repository, artifact_count, manifest_digest,
  created_at, published_at`;

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

/**
 * Sets what a successful build covered: its newest change id and, exactly, the snapshot it
 * read (kept only when no later snapshot is already recorded). $1 group, then the
 * parameters numbered from $n: change id, time, snapshot.
 */
const BUILT = (n: number) => `built_change_id = GREATEST(built_change_id, $${n}),
                         checked_at = GREATEST(COALESCE(checked_at, $${n + 1}), $${n + 1}),
                         built_snapshot = CASE WHEN $${n + 2}::pg_snapshot IS NULL THEN built_snapshot
                                               WHEN built_snapshot IS NULL OR pg_snapshot_xmax($${n + 2}::pg_snapshot) >= pg_snapshot_xmax(built_snapshot)
                                               THEN $${n + 2}::pg_snapshot ELSE built_snapshot END`;

/** The newest published version of a group with its kept package, and the snapshot it was read at. */
export interface RestorablePackage {
  version: number;
  package: StoredPackage;
  xmin: string;
  readAt: Date;
}

export type Allocation = { kind: 'unchanged'; current: StateVersion } | {
  kind: 'publish';
  version: StateVersion;
  /** A version allocated by an earlier attempt for the same content: its package may be kept. */
  reused: boolean;
};

/** The versions a group's states were published under. All SQL about them lives here. */
export class StateStore {
  constructor(private readonly pool: Pool) {}

  async latest(group: string): Promise<StateVersion | undefined> {
    const { rows } = await query<Row>(this.pool,
      `SELECT ${COLUMNS} FROM state_versions WHERE group_name = $1 AND status <> 'abandoned' ORDER BY version DESC LIMIT 1`, [group]);
    return rows[0] && fromRow(rows[0]);
  }

  async latestPublished(group: string): Promise<StateVersion | undefined> {
    const { rows } = await query<Row>(this.pool,
      `SELECT ${COLUMNS} FROM state_versions WHERE group_name = $1 AND status = 'published' ORDER BY version DESC LIMIT 1`, [group]);
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
    // (migration 65), which returns the version it settled on.
    const { rows } = await query<Row & { outcome: 'unchanged' | 'reused' | 'new' }>(this.pool,
      'SELECT * FROM satellite_allocate($1, $2, $3, $4, $5, $6)', [group, contentDigest, layout, repository, artifactCount, fresh]);
    const r = rows[0]!;
    const version = fromRow(r);
    return r.outcome === 'unchanged' ? { kind: 'unchanged', current: version } : { kind: 'publish', version, reused: r.outcome === 'reused' };
  }

  /** Marks a version published; older versions' packages are no longer needed and are dropped. */
  /** markPublished and markBuilt in one statement: a build's last round trip. */
  async markPublishedAndBuilt(group: string, version: number, manifestDigest: string, point: BuildPoint): Promise<void> {
    await query(this.pool,
      `WITH p AS (
         UPDATE state_versions SET status = 'published', manifest_digest = $3, published_at = now(),
                                   read_xmin = $7::xid8, read_at = CASE WHEN $7::xid8 IS NOT NULL THEN $5::timestamptz END
          WHERE group_name = $1 AND version = $2
       ), o AS (
         UPDATE state_versions SET manifest = NULL, blobs = NULL
          WHERE group_name = $1 AND version < $2 AND manifest IS NOT NULL
       )
       UPDATE groups SET ${BUILT(4)}
        WHERE name = $1`,
      [group, version, manifestDigest, point.changeId, point.at, point.snapshot ?? null, point.xmin ?? null]);
  }

  /**
   * The newest published version, when its package is still kept and the snapshot its
   * content was read at is known and no older than `maxAgeMs` (the change log since then is
   * still there): what a worker holding nothing of the group can start from.
   */
  async restorable(group: string, layout: string, maxAgeMs: number): Promise<RestorablePackage | undefined> {
    const { rows } = await query<{ version: number; read_xmin: string | null; read_at: Date; age_ms: number }>(this.pool,
      `SELECT version, read_xmin::text, read_at, extract(epoch FROM now() - read_at)::float8 * 1000 AS age_ms FROM state_versions
        WHERE group_name = $1 AND status = 'published' AND layout = $2
        ORDER BY version DESC LIMIT 1`, [group, layout]);
    const r = rows[0];
    if (!r?.read_xmin || r.age_ms > maxAgeMs) return undefined;
    const pkg = await this.loadPackage(group, r.version);
    return pkg && { version: r.version, package: pkg, xmin: r.read_xmin, readAt: r.read_at };
  }

  /** The newest published version and the manifest it was pushed as (when still kept): a delta's base. */
  async deltaBase(group: string): Promise<{ version: StateVersion; manifest: Buffer | null } | undefined> {
    const { rows } = await query<Row & { manifest: Buffer | null }>(this.pool,
      `SELECT ${COLUMNS}, manifest FROM state_versions WHERE group_name = $1 AND status = 'published' ORDER BY version DESC LIMIT 1`, [group]);
    return rows[0] && { version: fromRow(rows[0]), manifest: rows[0].manifest };
  }

  async markPublished(group: string, version: number, manifestDigest: string): Promise<void> {
    await query(this.pool,
      `WITH p AS (
         UPDATE state_versions SET status = 'published', manifest_digest = $3, published_at = now()
          WHERE group_name = $1 AND version = $2
       )
       UPDATE state_versions SET manifest = NULL, blobs = NULL
        WHERE group_name = $1 AND version < $2 AND manifest IS NOT NULL`,
      [group, version, manifestDigest]);
  }

  /** Published versions beyond the newest `keep`, not yet pruned from the registry. */
  async prunable(group: string, keep: number): Promise<StateVersion[]> {
    const { rows } = await query<Row>(this.pool,
      `SELECT ${COLUMNS} FROM state_versions WHERE group_name = $1 AND status = 'published' AND pruned_at IS NULL
         AND version < (SELECT COALESCE(MIN(version), 0) FROM (
               SELECT version FROM state_versions WHERE group_name = $1 AND status = 'published'
                ORDER BY version DESC LIMIT $2) newest)
       ORDER BY version`, [group, keep]);
    return rows.map(fromRow);
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
    const { rows } = await query<{ at: Date; change_id: string; snapshot: string }>(this.pool,
      `SELECT now() AS at, COALESCE((SELECT max(id) FROM change_log WHERE group_name = $1), 0) AS change_id,
              pg_current_snapshot()::text AS snapshot`, [group]);
    return { at: rows[0]!.at, changeId: Number(rows[0]!.change_id), snapshot: rows[0]!.snapshot };
  }

  /**
   * Records that `latest` now holds every change up to `point`. Called only after a build
   * succeeded, so a build that fails for good leaves its group stale for the reconcile pass.
   */
  async markBuilt(group: string, point: BuildPoint): Promise<void> {
    await query(this.pool,
      `UPDATE groups SET ${BUILT(2)} WHERE name = $1`, [group, point.changeId, point.at, point.snapshot ?? null]);
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
    // One parameter per blob: pg sends a Buffer parameter as binary, an array of them as
    // hex text (a 5 MB layer took a quarter of a second to encode and parse).
    const blobs = pkg.blobs.map((_, i) => `$${i + 5}::bytea`).join(', ');
    await query(this.pool,
      `UPDATE state_versions SET manifest_digest = $3, manifest = $4, blobs = ARRAY[${blobs}]::bytea[] WHERE group_name = $1 AND version = $2`,
      [group, version, pkg.digest, pkg.manifest, ...pkg.blobs]);
  }

  /** The manifest a version was pushed as, without its blobs. */
  async loadManifest(group: string, version: number): Promise<Buffer | undefined> {
    const { rows } = await query<{ manifest: Buffer }>(this.pool,
      'SELECT manifest FROM state_versions WHERE group_name = $1 AND version = $2 AND manifest IS NOT NULL', [group, version]);
    return rows[0]?.manifest;
  }

  async loadPackage(group: string, version: number): Promise<StoredPackage | undefined> {
    // A row per blob: a bytea column is decoded natively, a bytea[] is parsed in JavaScript.
    const { rows } = await query<{ manifest_digest: string; manifest: Buffer; blob: Buffer | null }>(this.pool,
      `SELECT v.manifest_digest, v.manifest, b.blob FROM state_versions v
         LEFT JOIN LATERAL unnest(v.blobs) WITH ORDINALITY AS b(blob, n) ON true
        WHERE v.group_name = $1 AND v.version = $2 AND v.manifest IS NOT NULL
        ORDER BY b.n`, [group, version]);
    const r = rows[0];
    return r && { digest: r.manifest_digest, manifest: r.manifest, blobs: rows.flatMap((x) => (x.blob ? [x.blob] : [])) };
  }

  /** Versions abandoned after they may have been pushed (tagged v<N>, never `latest`), not yet removed. */
  async abandoned(group: string): Promise<StateVersion[]> {
    const { rows } = await query<Row>(this.pool,
      `SELECT ${COLUMNS} FROM state_versions WHERE group_name = $1 AND status = 'abandoned' AND manifest_digest IS NOT NULL
         AND pruned_at IS NULL ORDER BY version`, [group]);
    return rows.map(fromRow);
  }

  /**
   * Groups whose published state may be out of date: never built, holding a change that no
   * successful build has published, or holding a tombstone (or a superseded manifest) whose
   * retention ended since the last successful build.
   */
  async staleGroups(tombstoneRetentionHours: number): Promise<string[]> {
    const { rows } = await query<{ name: string }>(this.pool,
      `SELECT g.name FROM groups g
        WHERE g.checked_at IS NULL
           OR EXISTS (SELECT 1 FROM change_log c WHERE c.group_name = g.name AND c.id > g.built_change_id)
           -- A change that committed after the snapshot of the last successful build, though
           -- its id is lower than a change that build saw (ids are taken before commit).
           OR EXISTS (SELECT 1 FROM change_log c WHERE c.group_name = g.name
                        AND c.xid >= pg_snapshot_xmin(g.built_snapshot)
                        AND NOT pg_visible_in_snapshot(c.xid, g.built_snapshot))
           OR EXISTS (SELECT 1 FROM artifacts a WHERE a.group_name = g.name AND a.deleted
                        AND a.deleted_at + make_interval(hours => $1) > g.checked_at
                        AND a.deleted_at + make_interval(hours => $1) <= now())
           OR EXISTS (SELECT 1 FROM superseded_manifests s WHERE s.group_name = g.name
                        AND s.superseded_at + make_interval(hours => $1) > g.checked_at
                        AND s.superseded_at + make_interval(hours => $1) <= now())
        ORDER BY g.name`, [tombstoneRetentionHours]);
    return rows.map((r) => r.name);
  }

  /**
   * Forgets change_log rows older than `hours` whose change is already published: the audit
   * trail stays bounded while every unpublished change stays visible to `staleGroups`.
   */
  async pruneChangeLog(hours: number): Promise<number> {
    const { rowCount } = await query(this.pool,
      `DELETE FROM change_log c USING groups g
        WHERE c.group_name = g.name AND c.id <= g.built_change_id AND c.at < now() - make_interval(hours => $1)
          AND (g.built_snapshot IS NULL OR pg_visible_in_snapshot(c.xid, g.built_snapshot))`, [hours]);
    return rowCount ?? 0;
  }

  async groups(): Promise<string[]> {
    const { rows } = await query<{ name: string }>(this.pool, 'SELECT name FROM groups ORDER BY name');
    return rows.map((r) => r.name);
  }
}
