// The SQL of state-store.ts (StateStore), one named statement per operation, kept apart to be read
// and reviewed as SQL. Parameters are numbered as the calls in state-store.ts pass them.

import { prepared, type Prepared } from '../db/pool.js';

/** Every column but the package's bytes, which only loadPackage reads. */
const COLUMNS = `group_name, version, content_digest, status, layout, repository, artifact_count, manifest_digest,
  created_at, published_at`;

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

/** StateStore.latest: the newest version not abandoned. */
export const LATEST = prepared(`SELECT ${COLUMNS} FROM state_versions WHERE group_name = $1 AND status <> 'abandoned' ORDER BY version DESC LIMIT 1`);

/** StateStore.latestPublished */
export const LATEST_PUBLISHED = `SELECT ${COLUMNS} FROM state_versions WHERE group_name = $1 AND status = 'published' ORDER BY version DESC LIMIT 1`;

/** StateStore.markPublishedAndBuilt */
export const MARK_PUBLISHED_AND_BUILT = prepared(`WITH p AS (
    UPDATE state_versions SET status = 'published', manifest_digest = $3, published_at = now(),
                              read_xmin = $7::xid8, read_at = CASE WHEN $7::xid8 IS NOT NULL THEN $5::timestamptz END
     WHERE group_name = $1 AND version = $2
  ), o AS (
    UPDATE state_versions SET manifest = NULL, blobs = NULL
     WHERE group_name = $1 AND version < $2 AND manifest IS NOT NULL
  )
  UPDATE groups SET ${BUILT(4)}
   WHERE name = $1`);

/**
 * StateStore.allocate: satellite_allocate (migration 65) decides under the group's lock; the
 * newest published version (a delta's base) comes back in the same round trip. It is read in
 * the statement's snapshot, taken before the lock: as before, when it was a query of its own
 * after the allocation, a version published meanwhile may be missed, which only makes the
 * delta start from an older version (its base is named in the manifest).
 */
export const ALLOCATE = `SELECT a.*, b.version AS base_version, b.layout AS base_layout, b.manifest AS base_manifest
  FROM satellite_allocate($1, $2, $3, $4, $5, $6) a
  LEFT JOIN LATERAL (SELECT version, layout, manifest FROM state_versions
                      WHERE group_name = $1 AND status = 'published' ORDER BY version DESC LIMIT 1) b ON true`;

/** StateStore.nextVersion: what satellite_allocate gives a new version. */
export const NEXT_VERSION = prepared('SELECT COALESCE(max(version), 0) + 1 AS version FROM state_versions WHERE group_name = $1');

/**
 * A kept blob as the package readers take it: base64 (state-store.ts's blobsOf), not bytea's
 * hex text. A 5 MB layer is 10 MB of hex, which node-postgres reads as one string and
 * decodes in JavaScript (30-45 ms of CPU); base64 is 6.7 MB and decodes natively (10-15 ms).
 */
const BLOB = "encode(b.blob, 'base64') AS blob";

/**
 * StateStore.restorable, one round trip: the version a new allocation would get (as
 * NEXT_VERSION) and, when the newest published version's read snapshot is known and no older
 * than $3 ms and its package is kept, that package, a row per blob (as LOAD_PACKAGE). A
 * group with nothing published, or nothing restorable, gives one row of NULLs beside `next`.
 */
export const RESTORABLE = prepared(`WITH r AS (
    SELECT version, read_xmin, read_at, artifact_count, manifest_digest, manifest, blobs FROM state_versions
     WHERE group_name = $1 AND status = 'published' AND layout = $2
     ORDER BY version DESC LIMIT 1
  ), ok AS (
    SELECT * FROM r WHERE read_xmin IS NOT NULL AND manifest IS NOT NULL
                      AND extract(epoch FROM now() - read_at)::float8 * 1000 <= $3
  )
  SELECT (SELECT COALESCE(max(version), 0) + 1 FROM state_versions WHERE group_name = $1) AS next,
         ok.version, ok.read_xmin::text, ok.read_at, ok.artifact_count, ok.manifest_digest, ok.manifest, ${BLOB}
    FROM (VALUES (1)) one
    LEFT JOIN ok ON true
    LEFT JOIN LATERAL unnest(ok.blobs) WITH ORDINALITY AS b(blob, n) ON true
   ORDER BY b.n`);

/** StateStore.markPublished */
export const MARK_PUBLISHED = `WITH p AS (
    UPDATE state_versions SET status = 'published', manifest_digest = $3, published_at = now()
     WHERE group_name = $1 AND version = $2
  )
  UPDATE state_versions SET manifest = NULL, blobs = NULL
   WHERE group_name = $1 AND version < $2 AND manifest IS NOT NULL`;

/**
 * StateStore.toPrune: of every group, the published versions older than its newest $1
 * (not pruned yet), and the abandoned ones with a manifest in the registry; by group, the
 * published first, each by version. One statement for the whole fleet: a pass that asked
 * per group made two queries per group (2,000 for 1,000 groups).
 */
export const TO_PRUNE = `WITH ranked AS (
    SELECT ${COLUMNS}, pruned_at,
           row_number() OVER (PARTITION BY group_name ORDER BY version DESC) AS newer
      FROM state_versions WHERE status = 'published'
  )
  SELECT * FROM (
    SELECT ${COLUMNS}, 0 AS kind FROM ranked WHERE newer > $1 AND pruned_at IS NULL
    UNION ALL
    SELECT ${COLUMNS}, 1 AS kind FROM state_versions
     WHERE status = 'abandoned' AND manifest_digest IS NOT NULL AND pruned_at IS NULL
  ) v ORDER BY group_name COLLATE "C", kind, version`;

/** StateStore.buildPoint */
export const BUILD_POINT = `SELECT now() AS at, COALESCE((SELECT max(id) FROM change_log WHERE group_name = $1), 0) AS change_id,
  pg_current_snapshot()::text AS snapshot`;

/** StateStore.markBuilt */
export const MARK_BUILT = prepared(`UPDATE groups SET ${BUILT(2)} WHERE name = $1`);

/**
 * StateStore.savePackage, for a package of `blobs` blobs: one parameter per blob, from $5
 * (pg sends a Buffer parameter as binary, an array of them as
 * hex text: a 5 MB layer took a quarter of a second to encode and parse).
 */
const savePackages = new Map<number, Prepared>();
export function savePackage(blobs: number): Prepared {
  let statement = savePackages.get(blobs);
  if (!statement) savePackages.set(blobs, (statement = prepared(savePackageText(blobs))));
  return statement;
}
function savePackageText(blobs: number): string {
  const params = Array.from({ length: blobs }, (_, i) => `$${i + 5}::bytea`);
  // The artifact's size (manifest and blobs) stays when the pruner lets the bytes go.
  const bytes = ['$4::bytea', ...params].map((p) => `octet_length(${p})`).join(' + ');
  return `UPDATE state_versions SET manifest_digest = $3, manifest = $4, blobs = ARRAY[${params.join(', ')}]::bytea[], bytes = ${bytes} WHERE group_name = $1 AND version = $2`;
}

/** StateStore.loadPackage */
export const LOAD_PACKAGE = prepared(`SELECT v.manifest_digest, v.manifest, ${BLOB} FROM state_versions v
   LEFT JOIN LATERAL unnest(v.blobs) WITH ORDINALITY AS b(blob, n) ON true
  WHERE v.group_name = $1 AND v.version = $2 AND v.manifest IS NOT NULL
  ORDER BY b.n`);

/** StateStore.staleGroups */
export const STALE_GROUPS = `SELECT g.name FROM groups g
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
  ORDER BY g.name`;

/** StateStore.pruneChangeLog */
export const PRUNE_CHANGE_LOG = `DELETE FROM change_log c USING groups g
  WHERE c.group_name = g.name AND c.id <= g.built_change_id AND c.at < now() - make_interval(hours => $1)
    AND (g.built_snapshot IS NULL OR pg_visible_in_snapshot(c.xid, g.built_snapshot))`;
