// The SQL of artifact-store.ts (ArtifactStore), one named statement per operation, kept apart to be read
// and reviewed as SQL. Parameters are numbered as the calls in artifact-store.ts pass them.

import { prepared } from '../db/pool.js';

// cosign's attachment tags, sha256-<hex>.sig|.att|.sbom, and the digest they name.
const COSIGN_TAG = `'^(sha256|sha512)-([a-f0-9]+)\\.(sig|att|sbom)$'`;
const cosignTarget = (tag: string) => `regexp_replace(${tag}, ${COSIGN_TAG}, '\\1:\\2')`;

/** Where a build starts: the oldest transaction still running, the time, the group's newest change. */
export const POINT = `pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, now() AS at,
  COALESCE((SELECT max(id) FROM change_log WHERE group_name = $1), 0)::text AS change_id,
  pg_current_snapshot()::text AS snapshot`;
/** How many columns of each listing row the point takes. */
export const POINT_COLUMNS = 4;

/**
 * The group listing: one pass over each table (hash joins on pre-aggregated children; the
 * tags are on each artifact's row), not a subquery per artifact. $1 group, $2 retention in hours, $3 whether
 * superseded manifests become tombstones. Keyed ($4 the xmin of an earlier snapshot): only
 * the entries changes since then may have touched, each with its listing row (or nulls).
 */
export function listing(mode: 'plain' | 'all' | 'keyed'): string {
  const keyed = mode === 'keyed';
  const on = (alias: string, digest: string) => (keyed ? `AND (${alias}.repository, ${alias}.${digest}) IN (SELECT repository, digest FROM touched)` : '');
  const touched = keyed ? `changes AS (
         SELECT repository, digest, tag, previous_digest FROM change_log WHERE group_name = $1 AND xid >= $4::xid8
       ), direct AS (
         SELECT repository, digest FROM changes
         UNION SELECT repository, digest FROM harbor_artifacts WHERE xid >= $4::xid8
         UNION SELECT repository, previous_digest FROM changes WHERE previous_digest IS NOT NULL
         UNION SELECT repository, ${cosignTarget('tag')} FROM changes WHERE tag ~ ${COSIGN_TAG}
         UNION SELECT * FROM unnest($5::text[], $6::text[])
       ), touched AS (
         SELECT repository, digest FROM direct
         UNION SELECT c.repository, c.child_digest FROM index_children c JOIN direct d USING (repository)
                WHERE c.group_name = $1 AND c.index_digest = d.digest
         UNION SELECT a.repository, a.subject_digest FROM artifacts a JOIN direct d USING (repository)
                WHERE a.group_name = $1 AND a.digest = d.digest AND a.subject_digest IS NOT NULL
         UNION SELECT a.repository, ${cosignTarget('x.tag')} FROM artifacts a JOIN direct d USING (repository), unnest(a.deleted_tags) AS x(tag)
                WHERE a.group_name = $1 AND a.digest = d.digest AND x.tag ~ ${COSIGN_TAG}
       ), ` : '';
  // An artifact's live tags are on its row (live_tags, kept by triggers on tags: migration 72).
  const tags = `NULLIF(array_to_string(a.live_tags, ' '), '')`;
  return `WITH ${touched}ch AS (
         SELECT repository, index_digest,
                json_agg(json_build_object('digest', child_digest, 'mediaType', media_type, 'platform', platform) ORDER BY position) AS children
           FROM index_children x WHERE group_name = $1 ${on('x', 'index_digest')} GROUP BY repository, index_digest
       ), kids AS (
         SELECT DISTINCT repository, child_digest FROM index_children x WHERE group_name = $1 ${on('x', 'child_digest')}
       ), listed AS (
         SELECT a.repository, a.digest, a.media_type, a.kind, a.size, a.subject_digest, a.deleted, a.deleted_at,
                CASE WHEN a.deleted THEN NULLIF(array_to_string(a.deleted_tags, ' '), '') ELSE ${tags} END AS tags,
                ch.children, h.labels, h.platform, sm.superseded_at,
                -- Superseded: untagged since a tag moved away from it, and neither an index
                -- nor a signature (a subject, or cosign's sha256-<hex>.sig tag) names it.
                (NOT a.deleted AND sm.superseded_at IS NOT NULL AND (a.tagged_at IS NULL OR sm.superseded_at > a.tagged_at)
                 AND cardinality(a.live_tags) = 0 AND $3
                 AND NOT EXISTS (SELECT 1 FROM artifacts s WHERE s.group_name = $1 AND s.repository = a.repository
                                    AND s.subject_digest = a.digest AND s.kind = 'SIGNATURE' AND NOT s.deleted)
                 AND NOT EXISTS (SELECT 1 FROM tags st WHERE st.group_name = $1 AND st.repository = a.repository
                                    AND st.tag = replace(a.digest, ':', '-') || '.sig')) AS superseded
           FROM artifacts a
           LEFT JOIN ch ON ch.repository = a.repository AND ch.index_digest = a.digest
           LEFT JOIN kids k ON k.repository = a.repository AND k.child_digest = a.digest
           LEFT JOIN harbor_artifacts h ON h.repository = a.repository AND h.digest = a.digest
           LEFT JOIN superseded_manifests sm ON sm.group_name = $1 AND sm.repository = a.repository AND sm.digest = a.digest
          WHERE a.group_name = $1 ${on('a', 'digest')}
            AND (NOT a.deleted OR a.deleted_at > now() - make_interval(hours => $2))
            AND (cardinality(a.deleted_tags) > 0 OR cardinality(a.live_tags) > 0 OR k.child_digest IS NULL)
       ), visible AS (
         SELECT repository, digest, media_type, kind, size, subject_digest, deleted OR superseded AS deleted, tags, children, labels, platform,
                CASE WHEN deleted THEN deleted_at + make_interval(hours => $2)
                     WHEN superseded THEN superseded_at + make_interval(hours => $2) END AS expires_at
           FROM listed
          WHERE NOT superseded OR superseded_at > now() - make_interval(hours => $2)
       )
       ${{
    // The point comes first in every row (one row of it alone when nothing is listed).
    keyed: `, point AS (SELECT ${POINT})
       SELECT p.*, k.repository, k.digest, v.repository, v.digest, v.media_type, v.kind, v.size, v.subject_digest, v.deleted, v.tags, v.children, v.labels, v.platform, v.expires_at
         FROM point p LEFT JOIN (touched k LEFT JOIN visible v USING (repository, digest)) ON true`,
    // A group of more than $4 records gets the point alone (a one-time filter: the listing
    // is not run), and is then read through a cursor. After the point, each row says how
    // many records the group has, counted up to $4 + 1 (a count of all of a 100,000-record
    // group read the whole table, ~50 ms before its cursor even started).
    all: `, point AS (SELECT ${POINT}), records AS (SELECT count(*) AS n FROM (SELECT FROM artifacts WHERE group_name = $1 LIMIT $4 + 1) r), page AS (
         SELECT * FROM visible WHERE (SELECT n FROM records) <= $4)
       SELECT p.*, r.n, v.* FROM point p CROSS JOIN records r LEFT JOIN page v ON true ORDER BY v.repository COLLATE "C", v.digest COLLATE "C"`,
    plain: 'SELECT * FROM visible ORDER BY repository COLLATE "C", digest COLLATE "C"',
  }[mode]}`;
}

/** ArtifactStore.recordManifest */
export const RECORD_MANIFEST = prepared(`WITH changed AS (
    -- Nothing changes when the manifest is already live and the tag (if any) already
    -- names it: Harbor's re-sends then add no change_log row and no build.
    SELECT NOT EXISTS (SELECT 1 FROM artifacts WHERE group_name = $1 AND repository = $2 AND digest = $3 AND NOT deleted)
        OR ($15::text IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM tags WHERE group_name = $1 AND repository = $2 AND tag = $15 AND digest = $3)) AS yes
  ), g AS (
    INSERT INTO groups (name) VALUES ($1) ON CONFLICT DO NOTHING
  ), a AS (
    INSERT INTO artifacts (group_name, repository, digest, media_type, kind, artifact_type, size, body,
                           subject_digest, annotations, tagged_at, live_tags)
    -- A new artifact carries its tag from the start (the tag upsert below always leaves the
    -- tag on it); the tags trigger then has nothing to write (migration 73).
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $15::text IS NOT NULL THEN clock_timestamp() END,
            CASE WHEN $15::text IS NOT NULL THEN ARRAY[$15::text] ELSE '{}' END)
    ON CONFLICT (group_name, repository, digest) DO UPDATE
      SET last_seen = now(), deleted = false, deleted_at = NULL, deleted_tags = '{}',
          tagged_at = COALESCE(EXCLUDED.tagged_at, artifacts.tagged_at)
      -- An identical re-send writes nothing (no dead row per PUT): only a revival, a
      -- tag new to this manifest (tagged_at), or last_seen once an hour.
      WHERE artifacts.deleted OR artifacts.last_seen < now() - interval '1 hour'
         OR ($15::text IS NOT NULL AND (SELECT yes FROM changed))
  ), c AS (
    INSERT INTO index_children (group_name, repository, index_digest, position, child_digest, media_type, size, platform)
    SELECT $1, $2, $3, p.position - 1, p.digest, p.media_type, p.size, p.platform
      FROM unnest($11::text[], $12::text[], $13::bigint[], $14::jsonb[]) WITH ORDINALITY
           AS p(digest, media_type, size, platform, position)
    ON CONFLICT DO NOTHING
  ), t AS (
    -- previous_digest comes from the row the upsert locked (the newest committed one),
    -- so two PUTs moving the same tag at once each learn what they moved it from.
    INSERT INTO tags (group_name, repository, tag, digest)
    SELECT $1, $2, $15, $3 WHERE $15::text IS NOT NULL
    ON CONFLICT (group_name, repository, tag) DO UPDATE
      SET digest = EXCLUDED.digest, updated_at = now(), previous_digest = tags.digest
      WHERE tags.digest <> EXCLUDED.digest
    RETURNING CASE WHEN previous_digest <> digest THEN previous_digest END AS moved_from
  ), b AS (
    INSERT INTO blob_sizes (group_name, repository, digest, size)
    SELECT $1, $2, x.digest, x.size FROM unnest($16::text[], $17::bigint[]) AS x(digest, size)
    ON CONFLICT DO NOTHING
  ), s AS (
    -- The manifest the tag moved away from is superseded once nothing else names it
    -- (decided when states are listed). An upsert: its row may be newer than this
    -- statement's snapshot.
    INSERT INTO superseded_manifests (group_name, repository, digest, superseded_at)
    SELECT $1, $2, moved_from, clock_timestamp() FROM t WHERE moved_from IS NOT NULL
    ON CONFLICT (group_name, repository, digest) DO UPDATE SET superseded_at = EXCLUDED.superseded_at
  ), d AS (
    -- A change: what the snapshot saw says so, or the tag upsert moved the tag (a PUT
    -- racing another PUT of the same tag can see no change yet move it back).
    SELECT yes OR EXISTS (SELECT 1 FROM t) AS yes FROM changed
  ), l AS (
    INSERT INTO change_log (group_name, action, repository, digest, tag, previous_digest)
    SELECT $1, 'put', $2, $3, $15, (SELECT moved_from FROM t) FROM d WHERE yes
  )
  INSERT INTO outbox (group_name) SELECT $1 FROM d WHERE yes`);

/** ArtifactStore.blobSizes */
export const BLOB_SIZES = prepared(`SELECT b.group_name || ' ' || b.repository || ' ' || b.digest AS k, b.size
  FROM unnest($1::text[], $2::text[], $3::text[]) AS q(g, r, d)
  JOIN blob_sizes b ON b.group_name = q.g AND b.repository = q.r AND b.digest = q.d`);

/** ArtifactStore.deleteManifest */
export const DELETE_MANIFEST = prepared(`WITH old_tags AS (
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
  INSERT INTO outbox (group_name) SELECT group_name FROM a`);

/** ArtifactStore.untag */
export const UNTAG = prepared(`WITH t AS (
    DELETE FROM tags WHERE group_name = $1 AND repository = $2 AND tag = $3 RETURNING digest
  ), l AS (
    INSERT INTO change_log (group_name, action, repository, digest, tag) SELECT $1, 'untag', $2, digest, $3 FROM t
  )
  INSERT INTO outbox (group_name) SELECT $1 FROM t`);

/** ArtifactStore.getManifest */
export const MANIFEST_BY_TAG = prepared(`SELECT a.digest, a.media_type, a.body, a.subject_digest FROM tags t
   JOIN artifacts a USING (group_name, repository, digest)
  WHERE t.group_name = $1 AND t.repository = $2 AND t.tag = $3 AND NOT a.deleted`);

/** ArtifactStore.getManifest */
export const MANIFEST_BY_DIGEST = prepared(`SELECT digest, media_type, body, subject_digest FROM artifacts
  WHERE group_name = $1 AND repository = $2 AND digest = $3 AND NOT deleted`);

/** ArtifactStore.listTags */
export const LIST_TAGS = prepared(`SELECT t.tag FROM (SELECT 1 FROM artifacts WHERE group_name = $1 AND repository = $2 LIMIT 1) known
  LEFT JOIN LATERAL (
    SELECT tag FROM tags WHERE group_name = $1 AND repository = $2 AND ($3::text IS NULL OR tag COLLATE "C" > $3)
     ORDER BY tag COLLATE "C" LIMIT $4
  ) t ON true`);

/** ArtifactStore.referrers */
export const REFERRERS = prepared(`SELECT digest, media_type, size, artifact_type, annotations FROM artifacts
  WHERE group_name = $1 AND repository = $2 AND subject_digest = $3 AND NOT deleted
    AND ($4::text IS NULL OR artifact_type = $4)
  ORDER BY digest COLLATE "C"`);

/** ArtifactStore.purgeExpiredTombstones */
export const PURGE_EXPIRED_TOMBSTONES = `WITH expired AS (
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
  SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM orphans) AS n`;
