import { query, type Pool } from '../db/pool.js';
import type { ArtifactKind } from '../oci/media-types.js';
import type { ParsedManifest, Platform } from '../oci/manifest.js';

// All SQL about a group's artifacts lives here. Every write is one statement (data-modifying
// CTEs), so it is atomic without an explicit transaction and costs one round trip; each
// writes its change_log and outbox rows in that same statement, so a change is either
// recorded together with the "group is dirty" mark, or not at all.

export interface ArtifactRef {
  group: string;
  repository: string;
}

export interface StoredManifest {
  digest: string;
  mediaType: string;
  body: Buffer;
  subject: string | null;
}

export interface ReferrerRow {
  digest: string;
  mediaType: string;
  size: number;
  artifactType: string | null;
  annotations: Record<string, string> | null;
}

export interface GroupArtifactRow {
  repository: string;
  digest: string;
  mediaType: string;
  kind: ArtifactKind;
  size: number;
  subject: string | null;
  deleted: boolean;
  tags: string[];
  children: { digest: string; mediaType: string; platform: Platform | null }[] | null;
  /** Harbor's labels of the artifact, when reconciliation has read them. */
  labels?: string[] | null;
  /** The platform Harbor read from a single-platform image's config, when known. */
  platform?: Platform | null;
}

export class ArtifactStore {
  constructor(private readonly pool: Pool) {}

  /**
   * Records a manifest (and moves `tag` to it) in one atomic statement, with its change_log
   * and outbox rows when it changes what the group holds.
   */
  async recordManifest(ref: ArtifactRef, m: ParsedManifest, tag: string | null): Promise<void> {
    const children = m.children;
    await query(
      this.pool,
      `WITH changed AS (
         -- Nothing changes when the manifest is already live and the tag (if any) already
         -- names it: Harbor's re-sends then add no change_log row and no build.
         SELECT NOT EXISTS (SELECT 1 FROM artifacts WHERE group_name = $1 AND repository = $2 AND digest = $3 AND NOT deleted)
             OR ($15::text IS NOT NULL AND NOT EXISTS (
                   SELECT 1 FROM tags WHERE group_name = $1 AND repository = $2 AND tag = $15 AND digest = $3)) AS yes
       ), g AS (
         INSERT INTO groups (name) VALUES ($1) ON CONFLICT DO NOTHING
       ), a AS (
         INSERT INTO artifacts (group_name, repository, digest, media_type, kind, artifact_type, size, body,
                                subject_digest, annotations)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (group_name, repository, digest) DO UPDATE
           SET last_seen = now(), deleted = false, deleted_at = NULL, deleted_tags = '{}'
           -- An identical re-send writes nothing (no dead row per PUT): only a revival, or
           -- last_seen once an hour.
           WHERE artifacts.deleted OR artifacts.last_seen < now() - interval '1 hour'
       ), c AS (
         INSERT INTO index_children (group_name, repository, index_digest, position, child_digest, media_type, size, platform)
         SELECT $1, $2, $3, p.position - 1, p.digest, p.media_type, p.size, p.platform
           FROM unnest($11::text[], $12::text[], $13::bigint[], $14::jsonb[]) WITH ORDINALITY
                AS p(digest, media_type, size, platform, position)
         ON CONFLICT DO NOTHING
       ), t AS (
         INSERT INTO tags (group_name, repository, tag, digest)
         SELECT $1, $2, $15, $3 WHERE $15::text IS NOT NULL
         ON CONFLICT (group_name, repository, tag) DO UPDATE SET digest = EXCLUDED.digest, updated_at = now()
           WHERE tags.digest <> EXCLUDED.digest
       ), b AS (
         INSERT INTO blob_sizes (group_name, repository, digest, size)
         SELECT $1, $2, x.digest, x.size FROM unnest($16::text[], $17::bigint[]) AS x(digest, size)
         ON CONFLICT DO NOTHING
       ), l AS (
         INSERT INTO change_log (group_name, action, repository, digest, tag) SELECT $1, 'put', $2, $3, $15 FROM changed WHERE yes
       )
       INSERT INTO outbox (group_name) SELECT $1 FROM changed WHERE yes`,
      [
        ref.group, ref.repository, m.digest, m.mediaType, m.kind, m.artifactType, m.bytes.length, m.bytes,
        m.subject, m.annotations === null ? null : JSON.stringify(m.annotations),
        children.map((c) => c.digest), children.map((c) => c.mediaType), children.map((c) => c.size),
        children.map((c) => (c.platform === null ? null : JSON.stringify(c.platform))),
        tag,
        m.blobs.map((b) => b.digest), m.blobs.map((b) => b.size),
      ],
    );
  }

  /** The size of a blob a recorded manifest or a finished upload named; undefined when unknown. */
  async blobSize(ref: ArtifactRef, digest: string): Promise<number | undefined> {
    const { rows } = await query<{ size: string }>(this.pool,
      'SELECT size FROM blob_sizes WHERE group_name = $1 AND repository = $2 AND digest = $3', [ref.group, ref.repository, digest]);
    return rows[0] && Number(rows[0].size);
  }

  /** Remembers the size of a blob whose bytes arrived and matched their digest. */
  async recordBlobSize(ref: ArtifactRef, digest: string, size: number): Promise<void> {
    await query(this.pool,
      'INSERT INTO blob_sizes (group_name, repository, digest, size) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
      [ref.group, ref.repository, digest, size]);
  }

  /**
   * Turns the manifest into a tombstone: it disappears from the registry API and its tags
   * are kept on the row so the next state can tell satellites what to remove.
   * Returns false when there is no live manifest with that digest.
   */
  async deleteManifest(ref: ArtifactRef, digest: string): Promise<boolean> {
    const { rowCount } = await query(
      this.pool,
      `WITH old_tags AS (
         DELETE FROM tags WHERE group_name = $1 AND repository = $2 AND digest = $3 RETURNING tag
       ), a AS (
         UPDATE artifacts
            SET deleted = true, deleted_at = now(),
                deleted_tags = COALESCE((SELECT array_agg(tag ORDER BY tag) FROM old_tags), '{}')
          WHERE group_name = $1 AND repository = $2 AND digest = $3 AND NOT deleted
          RETURNING group_name
       ), l AS (
         INSERT INTO change_log (group_name, action, repository, digest) SELECT $1, 'delete', $2, $3 FROM a
       )
       INSERT INTO outbox (group_name) SELECT group_name FROM a`,
      [ref.group, ref.repository, digest],
    );
    return rowCount === 1;
  }

  /** Removes a tag (OCI 1.1 DELETE by tag); the manifest stays. False when no such tag. */
  async untag(ref: ArtifactRef, tag: string): Promise<boolean> {
    const { rowCount } = await query(
      this.pool,
      `WITH t AS (
         DELETE FROM tags WHERE group_name = $1 AND repository = $2 AND tag = $3 RETURNING digest
       ), l AS (
         INSERT INTO change_log (group_name, action, repository, digest, tag) SELECT $1, 'untag', $2, digest, $3 FROM t
       )
       INSERT INTO outbox (group_name) SELECT $1 FROM t`,
      [ref.group, ref.repository, tag],
    );
    return rowCount === 1;
  }

  /** A live manifest by tag or digest, with the exact bytes recorded. */
  async getManifest(ref: ArtifactRef, reference: { tag: string } | { digest: string }): Promise<StoredManifest | undefined> {
    const byTag = 'tag' in reference;
    const { rows } = await query<{ digest: string; media_type: string; body: Buffer; subject_digest: string | null }>(
      this.pool,
      byTag
        ? `SELECT a.digest, a.media_type, a.body, a.subject_digest FROM tags t
             JOIN artifacts a USING (group_name, repository, digest)
            WHERE t.group_name = $1 AND t.repository = $2 AND t.tag = $3 AND NOT a.deleted`
        : `SELECT digest, media_type, body, subject_digest FROM artifacts
            WHERE group_name = $1 AND repository = $2 AND digest = $3 AND NOT deleted`,
      [ref.group, ref.repository, byTag ? reference.tag : reference.digest],
    );
    const r = rows[0];
    return r && { digest: r.digest, mediaType: r.media_type, body: r.body, subject: r.subject_digest };
  }

  /** Tags in lexical order, after `last`, at most `limit`; undefined when the repository is unknown. */
  async listTags(ref: ArtifactRef, limit: number, last: string | undefined): Promise<string[] | undefined> {
    const { rows } = await query<{ tag: string | null }>(
      this.pool,
      `SELECT t.tag FROM (SELECT 1 FROM artifacts WHERE group_name = $1 AND repository = $2 LIMIT 1) known
         LEFT JOIN LATERAL (
           SELECT tag FROM tags WHERE group_name = $1 AND repository = $2 AND ($3::text IS NULL OR tag COLLATE "C" > $3)
            ORDER BY tag COLLATE "C" LIMIT $4
         ) t ON true`,
      [ref.group, ref.repository, last ?? null, limit],
    );
    if (rows.length === 0) return undefined;
    return rows.flatMap((r) => (r.tag === null ? [] : [r.tag]));
  }

  /** Live manifests whose `subject` is `digest` (OCI referrers API). */
  async referrers(ref: ArtifactRef, digest: string, artifactType: string | undefined): Promise<ReferrerRow[]> {
    const { rows } = await query<{ digest: string; media_type: string; size: number; artifact_type: string | null; annotations: Record<string, string> | null }>(
      this.pool,
      `SELECT digest, media_type, size, artifact_type, annotations FROM artifacts
        WHERE group_name = $1 AND repository = $2 AND subject_digest = $3 AND NOT deleted
          AND ($4::text IS NULL OR artifact_type = $4)
        ORDER BY digest COLLATE "C"`,
      [ref.group, ref.repository, digest, artifactType ?? null],
    );
    return rows.map((r) => ({ digest: r.digest, mediaType: r.media_type, size: r.size, artifactType: r.artifact_type, annotations: r.annotations }));
  }

  /**
   * Everything a group's state lists: live artifacts, and tombstones younger than the
   * retention. An untagged manifest that an index of the same repository lists is part of
   * that index, not an entry of its own (Harbor pushes an index's children first, by digest).
   */
  async listGroup(group: string, tombstoneRetentionHours: number): Promise<GroupArtifactRow[]> {
    const { rows } = await query<{
      repository: string; digest: string; media_type: string; kind: ArtifactKind; size: number;
      subject_digest: string | null; deleted: boolean; tags: string[];
      children: { digest: string; mediaType: string; platform: Platform | null }[] | null;
      labels: string[] | null; platform: Platform | null;
    }>(
      this.pool,
      `SELECT a.repository, a.digest, a.media_type, a.kind, a.size, a.subject_digest, a.deleted,
              CASE WHEN a.deleted THEN a.deleted_tags
                   ELSE COALESCE((SELECT array_agg(t.tag) FROM tags t
                                   WHERE t.group_name = a.group_name AND t.repository = a.repository AND t.digest = a.digest), '{}')
              END AS tags,
              (SELECT json_agg(json_build_object('digest', c.child_digest, 'mediaType', c.media_type, 'platform', c.platform)
                               ORDER BY c.position)
                 FROM index_children c
                WHERE c.group_name = a.group_name AND c.repository = a.repository AND c.index_digest = a.digest) AS children,
              h.labels, h.platform
         FROM artifacts a
         LEFT JOIN harbor_artifacts h ON h.repository = a.repository AND h.digest = a.digest
        WHERE a.group_name = $1
          AND (NOT a.deleted OR a.deleted_at > now() - make_interval(hours => $2))
          AND (cardinality(a.deleted_tags) > 0
               OR EXISTS (SELECT 1 FROM tags t WHERE t.group_name = a.group_name AND t.repository = a.repository AND t.digest = a.digest)
               OR NOT EXISTS (SELECT 1 FROM index_children c
                               WHERE c.group_name = a.group_name AND c.repository = a.repository AND c.child_digest = a.digest))`,
      [group, tombstoneRetentionHours],
    );
    return rows.map((r) => ({
      repository: r.repository, digest: r.digest, mediaType: r.media_type, kind: r.kind, size: r.size,
      subject: r.subject_digest, deleted: r.deleted, tags: r.tags, children: r.children, labels: r.labels, platform: r.platform,
    }));
  }

  async groupExists(group: string): Promise<boolean> {
    const { rowCount } = await query(this.pool, 'SELECT 1 FROM groups WHERE name = $1', [group]);
    return rowCount === 1;
  }

  /**
   * Forgets tombstones older than the retention (they no longer appear in states), with the
   * untagged children of a forgotten index that no other index lists.
   */
  async purgeExpiredTombstones(tombstoneRetentionHours: number): Promise<number> {
    const { rows } = await query<{ n: string }>(
      this.pool,
      `WITH expired AS (
         SELECT group_name, repository, digest FROM artifacts
          WHERE deleted AND deleted_at < now() - make_interval(hours => $1)
       ), gone_links AS (
         DELETE FROM index_children c USING expired e
          WHERE c.group_name = e.group_name AND c.repository = e.repository AND c.index_digest = e.digest
          RETURNING c.group_name, c.repository, c.child_digest
       ), gone AS (
         DELETE FROM artifacts a USING expired e
          WHERE a.group_name = e.group_name AND a.repository = e.repository AND a.digest = e.digest
          RETURNING 1
       ), orphans AS (
         DELETE FROM artifacts a USING gone_links l
          WHERE a.group_name = l.group_name AND a.repository = l.repository AND a.digest = l.child_digest
            AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.group_name = a.group_name AND t.repository = a.repository AND t.digest = a.digest)
            AND NOT EXISTS (SELECT 1 FROM index_children o WHERE o.group_name = a.group_name AND o.repository = a.repository
                              AND o.child_digest = a.digest
                              AND NOT (o.group_name, o.repository, o.index_digest) IN (SELECT * FROM expired))
          RETURNING 1
       )
       SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM orphans) AS n`,
      [tombstoneRetentionHours],
    );
    return Number(rows[0]?.n ?? 0);
  }
}
