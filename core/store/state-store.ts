import { inTransaction, query, type Pool } from '../db/pool.js';

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

export type Allocation = { kind: 'unchanged'; current: StateVersion } | { kind: 'publish'; version: StateVersion };

/** The versions a group's states were published under. All SQL about them lives here. */
export class StateStore {
  constructor(private readonly pool: Pool) {}

  async latest(group: string): Promise<StateVersion | undefined> {
    const { rows } = await query<Row>(this.pool,
      "SELECT * FROM state_versions WHERE group_name = $1 AND status <> 'abandoned' ORDER BY version DESC LIMIT 1", [group]);
    return rows[0] && fromRow(rows[0]);
  }

  async latestPublished(group: string): Promise<StateVersion | undefined> {
    const { rows } = await query<Row>(this.pool,
      "SELECT * FROM state_versions WHERE group_name = $1 AND status = 'published' ORDER BY version DESC LIMIT 1", [group]);
    return rows[0] && fromRow(rows[0]);
  }

  /**
   * Decides what a build publishes, under a per-group lock: nothing when the content equals
   * the latest published state (same layout and place); the pending version when a retry
   * brings the same content; else a new version (a pending one for other content is
   * abandoned: its number is never reused, so version tags stay immutable).
   */
  async allocate(group: string, contentDigest: string, layout: string, repository: string, artifactCount: number): Promise<Allocation> {
    return inTransaction(this.pool, async (c) => {
      await c.query("SELECT pg_advisory_xact_lock(hashtext('satellite-state:' || $1))", [group]);
      const { rows } = await c.query<Row>(
        "SELECT * FROM state_versions WHERE group_name = $1 AND status <> 'abandoned' ORDER BY version DESC LIMIT 1", [group]);
      const last = rows[0] && fromRow(rows[0]);
      const same = last && last.contentDigest === contentDigest && last.layout === layout && last.repository === repository;
      if (same && last.status === 'published') return { kind: 'unchanged', current: last };
      if (same && last.status === 'pending') return { kind: 'publish', version: last };
      if (last?.status === 'pending') {
        await c.query("UPDATE state_versions SET status = 'abandoned' WHERE group_name = $1 AND version = $2", [group, last.version]);
      }
      const { rows: inserted } = await c.query<Row>(
        `INSERT INTO state_versions (group_name, version, content_digest, status, layout, repository, artifact_count)
         SELECT $1, COALESCE(MAX(version), 0) + 1, $2, 'pending', $3, $4, $5 FROM state_versions WHERE group_name = $1
         RETURNING *`,
        [group, contentDigest, layout, repository, artifactCount]);
      return { kind: 'publish', version: fromRow(inserted[0]!) };
    });
  }

  async markPublished(group: string, version: number, manifestDigest: string): Promise<void> {
    await query(this.pool,
      "UPDATE state_versions SET status = 'published', manifest_digest = $3, published_at = now() WHERE group_name = $1 AND version = $2",
      [group, version, manifestDigest]);
  }

  /** Published versions beyond the newest `keep`, not yet pruned from the registry. */
  async prunable(group: string, keep: number): Promise<StateVersion[]> {
    const { rows } = await query<Row>(this.pool,
      `SELECT * FROM state_versions WHERE group_name = $1 AND status = 'published' AND pruned_at IS NULL
         AND version < (SELECT COALESCE(MIN(version), 0) FROM (
               SELECT version FROM state_versions WHERE group_name = $1 AND status = 'published'
                ORDER BY version DESC LIMIT $2) newest)
       ORDER BY version`, [group, keep]);
    return rows.map(fromRow);
  }

  async markPruned(group: string, version: number): Promise<void> {
    await query(this.pool, 'UPDATE state_versions SET pruned_at = now() WHERE group_name = $1 AND version = $2', [group, version]);
  }

  /** Records that a build is reading the group now (before it reads). */
  async markChecked(group: string): Promise<void> {
    await query(this.pool, 'UPDATE groups SET checked_at = now() WHERE name = $1', [group]);
  }

  /**
   * Groups whose published state may be out of date: never built, changed since their last
   * build, or holding a tombstone whose retention ended since then.
   */
  async staleGroups(tombstoneRetentionHours: number): Promise<string[]> {
    const { rows } = await query<{ name: string }>(this.pool,
      `SELECT g.name FROM groups g
        WHERE g.checked_at IS NULL
           OR EXISTS (SELECT 1 FROM change_log c WHERE c.group_name = g.name AND c.at > g.checked_at)
           OR EXISTS (SELECT 1 FROM artifacts a WHERE a.group_name = g.name AND a.deleted
                        AND a.deleted_at + make_interval(hours => $1) > g.checked_at
                        AND a.deleted_at + make_interval(hours => $1) <= now())
        ORDER BY g.name`, [tombstoneRetentionHours]);
    return rows.map((r) => r.name);
  }

  async groups(): Promise<string[]> {
    const { rows } = await query<{ name: string }>(this.pool, 'SELECT name FROM groups ORDER BY name');
    return rows.map((r) => r.name);
  }
}
